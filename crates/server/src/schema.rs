// @generated automatically by Diesel CLI.

pub mod sql_types {
    #[derive(
        diesel::query_builder::QueryId, Clone, std::fmt::Debug, diesel::sql_types::SqlType,
    )]
    #[diesel(postgres_type(name = "tsvector", schema = "pg_catalog"))]
    pub struct Tsvector;
}

diesel::table! {
    accounts (id) {
        id -> Int8,
        name -> Text,
        email -> Nullable<Text>,
        balance -> Int8,
        created_at -> Timestamptz,
        last_event_id -> Int8,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Int8,
        account_id -> Int8,
        prefix -> Text,
        secret_hash -> Bytea,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        rate_window -> Int8,
        rate_count -> Int4,
        rate_limit -> Int4,
    }
}

diesel::table! {
    assistants (id) {
        id -> Int8,
        account_id -> Int8,
        name -> Text,
        system_prompt -> Text,
        initial_message -> Nullable<Text>,
        variables -> Jsonb,
        llm_model -> Text,
        llm_temperature -> Float8,
        tool_ids -> Array<Nullable<Int8>>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        llm_provider -> Text,
        fallback_llm_provider -> Nullable<Text>,
        fallback_llm_model -> Nullable<Text>,
        coalesce_ms -> Int4,
        knowledge_base_id -> Nullable<Int8>,
        knowledge_mode -> Text,
        handoff_enabled -> Bool,
        handoff_instructions -> Text,
        handoff_message -> Text,
        conversation_inactivity_timeout -> Nullable<Int4>,
        post_call_schema -> Jsonb,
        conversation_ended_webhook_url -> Nullable<Text>,
        conversation_ended_webhook_secret -> Text,
    }
}

diesel::table! {
    audit_log (account_id, id) {
        account_id -> Int8,
        id -> Int8,
        at -> Timestamptz,
        actor_type -> Text,
        actor_operator_id -> Nullable<Int8>,
        actor_name -> Nullable<Text>,
        actor_api_key_id -> Nullable<Int8>,
        actor_key_prefix -> Nullable<Text>,
        action -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        details -> Jsonb,
    }
}

diesel::table! {
    console_sessions (token_hash) {
        token_hash -> Bytea,
        account_id -> Int8,
        api_key_id -> Nullable<Int8>,
        csrf_token -> Text,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        operator_id -> Nullable<Int8>,
    }
}

diesel::table! {
    console_sign_in_failures (client) {
        client -> Text,
        window_start -> Int8,
        failures -> Int4,
    }
}

diesel::table! {
    conversation_endings (conversation_id, ended_at) {
        conversation_id -> Uuid,
        ended_at -> Timestamptz,
        account_id -> Int8,
        stage -> Text,
        attempts -> Int4,
        due_at -> Timestamptz,
        payload -> Nullable<Text>,
    }
}

diesel::table! {
    conversation_notes (id) {
        id -> Int8,
        conversation_id -> Uuid,
        author_operator_id -> Nullable<Int8>,
        author_name -> Text,
        content -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    conversation_viewers (conversation_id, session_hash) {
        conversation_id -> Uuid,
        session_hash -> Bytea,
        name -> Text,
        seen_at -> Timestamptz,
    }
}

diesel::table! {
    conversations (id) {
        id -> Uuid,
        account_id -> Int8,
        assistant_id -> Int8,
        customer_identifier -> Text,
        kind -> Text,
        variables -> Jsonb,
        ai_enabled -> Bool,
        message_count -> Int8,
        total_cost -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        next_seq -> Int8,
        opted_out -> Bool,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        assignee_id -> Nullable<Int8>,
        handoff_requested_at -> Nullable<Timestamptz>,
        ends_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        extracted_variables -> Jsonb,
        summary -> Nullable<Text>,
        summary_through_seq -> Int8,
        summary_claimed_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    events (account_id, id) {
        account_id -> Int8,
        id -> Int8,
        kind -> Text,
        conversation_id -> Uuid,
        assistant_id -> Int8,
        customer_identifier -> Text,
        message -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        detail -> Nullable<Jsonb>,
        reason -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (account_id, key) {
        account_id -> Int8,
        key -> Text,
        fingerprint -> Bytea,
        response_status -> Nullable<Int4>,
        response_body -> Nullable<Jsonb>,
        locked_until -> Timestamptz,
        token -> Uuid,
        message_id -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    knowledge_bases (id) {
        id -> Int8,
        account_id -> Int8,
        name -> Text,
        description -> Nullable<Text>,
        language -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        passages_count -> Int8,
    }
}

diesel::table! {
    knowledge_documents (id) {
        id -> Int8,
        knowledge_base_id -> Int8,
        account_id -> Int8,
        name -> Text,
        description -> Nullable<Text>,
        kind -> Text,
        content -> Nullable<Bytea>,
        url -> Nullable<Text>,
        links -> Array<Nullable<Text>>,
        relative_links_limit -> Nullable<Int4>,
        status -> Text,
        reason -> Nullable<Text>,
        passages_count -> Int4,
        lease_until -> Nullable<Timestamptz>,
        attempts -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::Tsvector;

    knowledge_passages (id) {
        id -> Int8,
        document_id -> Int8,
        knowledge_base_id -> Int8,
        position -> Int4,
        heading -> Nullable<Text>,
        body -> Text,
        url -> Nullable<Text>,
        tokens -> Int4,
        search -> Tsvector,
    }
}

diesel::table! {
    knowledge_terms (knowledge_base_id, lexeme) {
        knowledge_base_id -> Int8,
        lexeme -> Text,
        passages -> Int4,
    }
}

diesel::table! {
    messages (id) {
        id -> Int8,
        conversation_id -> Uuid,
        turn_id -> Int8,
        role -> Text,
        content -> Text,
        variables -> Nullable<Jsonb>,
        function_calls -> Nullable<Jsonb>,
        cost -> Nullable<Int8>,
        prompt_tokens -> Nullable<Int4>,
        completion_tokens -> Nullable<Int4>,
        created_at -> Timestamptz,
        seq -> Int8,
        model -> Nullable<Text>,
        knowledge -> Nullable<Jsonb>,
        author_operator_id -> Nullable<Int8>,
        author_name -> Nullable<Text>,
    }
}

diesel::table! {
    model_calls (id) {
        id -> Int8,
        account_id -> Int8,
        conversation_id -> Uuid,
        purpose -> Text,
        model -> Text,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        cost -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    operator_password_links (token_hash) {
        token_hash -> Bytea,
        operator_id -> Int8,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    operators (id) {
        id -> Int8,
        account_id -> Int8,
        email -> Text,
        name -> Text,
        role -> Text,
        password_hash -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    pending_replies (message_id) {
        message_id -> Int8,
        conversation_id -> Uuid,
        account_id -> Int8,
        hold -> Int8,
        lease_until -> Timestamptz,
    }
}

diesel::table! {
    settlements_due (message_id) {
        message_id -> Int8,
        account_id -> Int8,
        conversation_id -> Uuid,
        reply_seq -> Int8,
        refund -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    summary_folds (conversation_id, after_seq) {
        conversation_id -> Uuid,
        after_seq -> Int8,
        through_seq -> Int8,
        account_id -> Int8,
        model -> Text,
        prompt_tokens -> Int4,
        completion_tokens -> Int4,
        cost -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    tool_calls (id) {
        id -> Int8,
        account_id -> Int8,
        idempotency_key -> Nullable<Text>,
        message_id -> Int8,
        name -> Text,
        arguments -> Jsonb,
        result -> Nullable<Jsonb>,
        is_error -> Nullable<Bool>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    tools (id) {
        id -> Int8,
        account_id -> Int8,
        name -> Text,
        description -> Text,
        endpoint -> Text,
        method -> Text,
        timeout_secs -> Int4,
        headers -> Jsonb,
        schema -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Int8,
        webhook_id -> Int8,
        event_id -> Int8,
        conversation_id -> Uuid,
        body -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        first_attempt_at -> Nullable<Timestamptz>,
        delivered_at -> Nullable<Timestamptz>,
        last_status -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Int8,
        account_id -> Int8,
        url -> Text,
        event_types -> Array<Nullable<Text>>,
        secret -> Text,
        dispatched_up_to -> Int8,
        disabled_at -> Nullable<Timestamptz>,
        disabled_reason -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    widget_addresses (address) {
        address -> Text,
        rate_window -> Int8,
        rate_count -> Int4,
    }
}

diesel::table! {
    widget_visitor_tokens (token_hash) {
        token_hash -> Bytea,
        widget_id -> Int8,
        public_id -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    widget_visitors (widget_id, visitor_id) {
        widget_id -> Int8,
        visitor_id -> Text,
        rate_window -> Int8,
        rate_count -> Int4,
    }
}

diesel::table! {
    widgets (id) {
        id -> Int8,
        account_id -> Int8,
        assistant_id -> Int8,
        public_key -> Text,
        allowed_origins -> Array<Nullable<Text>>,
        api_key_id -> Int8,
        created_at -> Timestamptz,
        tools_enabled -> Bool,
    }
}

diesel::joinable!(api_keys -> accounts (account_id));
diesel::joinable!(assistants -> accounts (account_id));
diesel::joinable!(assistants -> knowledge_bases (knowledge_base_id));
diesel::joinable!(audit_log -> accounts (account_id));
diesel::joinable!(console_sessions -> accounts (account_id));
diesel::joinable!(console_sessions -> api_keys (api_key_id));
diesel::joinable!(console_sessions -> operators (operator_id));
diesel::joinable!(conversation_endings -> conversations (conversation_id));
diesel::joinable!(conversation_notes -> conversations (conversation_id));
diesel::joinable!(conversation_viewers -> conversations (conversation_id));
diesel::joinable!(conversations -> accounts (account_id));
diesel::joinable!(conversations -> assistants (assistant_id));
diesel::joinable!(conversations -> operators (assignee_id));
diesel::joinable!(knowledge_bases -> accounts (account_id));
diesel::joinable!(knowledge_documents -> knowledge_bases (knowledge_base_id));
diesel::joinable!(knowledge_passages -> knowledge_documents (document_id));
diesel::joinable!(knowledge_terms -> knowledge_bases (knowledge_base_id));
diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(model_calls -> conversations (conversation_id));
diesel::joinable!(operator_password_links -> operators (operator_id));
diesel::joinable!(operators -> accounts (account_id));
diesel::joinable!(summary_folds -> conversations (conversation_id));
diesel::joinable!(tools -> accounts (account_id));
diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));
diesel::joinable!(webhooks -> accounts (account_id));
diesel::joinable!(widget_visitor_tokens -> widgets (widget_id));
diesel::joinable!(widget_visitors -> widgets (widget_id));
diesel::joinable!(widgets -> accounts (account_id));
diesel::joinable!(widgets -> api_keys (api_key_id));
diesel::joinable!(widgets -> assistants (assistant_id));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    api_keys,
    assistants,
    audit_log,
    console_sessions,
    console_sign_in_failures,
    conversation_endings,
    conversation_notes,
    conversation_viewers,
    conversations,
    events,
    idempotency_keys,
    knowledge_bases,
    knowledge_documents,
    knowledge_passages,
    knowledge_terms,
    messages,
    model_calls,
    operator_password_links,
    operators,
    pending_replies,
    settlements_due,
    summary_folds,
    tool_calls,
    tools,
    webhook_deliveries,
    webhooks,
    widget_addresses,
    widget_visitor_tokens,
    widget_visitors,
    widgets,
);
