//! Turn-taking in PostgreSQL: admission of a customer's message, waiting for its turn, and
//! recording (or abandoning) its reply.
//!
//! A message admitted for an AI reply gets a row in `pending_replies` holding the money
//! reserved for it and a lease. A message's turn comes when no earlier message of its
//! conversation is pending with a live lease, so replies are produced one at a time in
//! arrival order by any number of server processes, and no connection is held while waiting
//! or while the model thinks. A process that dies leaves a lease that runs out; whoever
//! finds it then refunds its reservation and removes the unanswered message.

use std::time::Duration;

use super::pricing::TokenUsage;
use crate::idempotency::Claim;
use anyreply_core::ErrorCode;
use anyreply_core::wire::{FunctionCall, GenerateReplyRequest, GenerateReplyResponse};
use axum::http::StatusCode;
use diesel::PgJsonbExpressionMethods;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Double, Int8, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::models::assistant::{self, AssistantRow};
use crate::models::message::{ROLE_ASSISTANT, ROLE_USER};
use crate::schema::{accounts, conversations, messages, pending_replies};
use anyreply_core::Money;

/// A stored customer message.
#[derive(Debug)]
pub struct Admission {
    pub conversation_id: Uuid,
    /// `None` under human takeover: stored, not to be answered.
    pub turn: Option<Turn>,
}

/// A message waiting for, or holding, its conversation's turn.
#[derive(Debug, Clone)]
pub struct Turn {
    pub conversation_id: Uuid,
    pub message_id: i64,
    pub customer_identifier: String,
    pub message: String,
    /// The request's variables, merged into the conversation's when the reply is recorded.
    pub variables: Value,
    pub assistant: AssistantRow,
}

/// Stores the message in its conversation (created on first contact) and, unless a human has
/// taken over, reserves the reply's most possible cost and queues the message for a reply.
/// All or nothing: a message that cannot be paid for is not stored. Under an idempotency
/// `claim`, a takeover's answer is stored with the message, a reply's queued message noted.
pub async fn admit(
    app: &App,
    account_id: i64,
    request: &GenerateReplyRequest,
    claim: Option<&Claim>,
) -> ApiResult<Admission> {
    let settings = &app.settings;
    let lease = settings.reply_lease.as_secs_f64();
    let mut conn = app.db().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let assistant = assistant::find(conn, account_id, request.assistant_id)
            .await?
            .ok_or(ErrorCode::AssistantNotFound)?;
        let variables = Value::Object(request.variables.clone().unwrap_or_default());
        // The upsert locks the conversation row until commit, which orders concurrent
        // messages of one customer: exactly one conversation, ids in arrival order.
        let (conversation_id, ai_enabled): (Uuid, bool) = diesel::insert_into(conversations::table)
            .values((
                conversations::id.eq(Uuid::now_v7()),
                conversations::account_id.eq(account_id),
                conversations::assistant_id.eq(assistant.id),
                conversations::customer_identifier.eq(&request.customer_identifier),
                conversations::message_count.eq(1),
            ))
            .on_conflict((conversations::assistant_id, conversations::customer_identifier))
            .do_update()
            .set((
                conversations::message_count.eq(conversations::message_count + 1),
                conversations::updated_at.eq(diesel::dsl::now),
            ))
            .returning((conversations::id, conversations::ai_enabled))
            .get_result(conn)
            .await?;

        if !ai_enabled {
            // No reply to wait for: the variables join the conversation now.
            diesel::update(conversations::table.find(conversation_id))
                .set(conversations::variables.eq(conversations::variables.concat(&variables)))
                .execute(conn)
                .await?;
        }
        let hold = if ai_enabled {
            let hold = super::reservation(settings, &assistant);
            let reserved = diesel::update(accounts::table.find(account_id).filter(accounts::balance.ge(hold.subunits())))
                .set(accounts::balance.eq(accounts::balance - hold.subunits()))
                .execute(conn)
                .await?;
            if reserved == 0 {
                return Err(ErrorCode::InsufficientBalance.into());
            }
            Some(hold)
        } else {
            None
        };

        let message_id: i64 = diesel::select(nextval("messages_id_seq")).get_result(conn).await?;
        diesel::insert_into(messages::table)
            .values((
                messages::id.eq(message_id),
                messages::turn_id.eq(message_id),
                messages::conversation_id.eq(conversation_id),
                messages::role.eq(ROLE_USER),
                messages::content.eq(&request.message),
                messages::variables.eq(&variables),
            ))
            .execute(conn)
            .await?;

        let Some(hold) = hold else {
            if let Some(claim) = claim {
                let answer = GenerateReplyResponse {
                    success: true,
                    conversation_id,
                    customer_identifier: request.customer_identifier.clone(),
                    reply: String::new(),
                    function_calls: Vec::new(),
                    ai_disabled: true,
                };
                claim.complete(conn, StatusCode::OK, &answer).await?;
            }
            return Ok(Admission { conversation_id, turn: None });
        };
        if let Some(claim) = claim {
            claim.attach_message(conn, message_id).await?;
        }
        diesel::sql_query(
            "INSERT INTO pending_replies (message_id, conversation_id, account_id, hold, lease_until)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        )
        .bind::<Int8, _>(message_id)
        .bind::<SqlUuid, _>(conversation_id)
        .bind::<Int8, _>(account_id)
        .bind::<Int8, _>(hold.subunits())
        .bind::<Double, _>(lease)
        .execute(conn)
        .await?;
        Ok(Admission {
            conversation_id,
            turn: Some(Turn {
                conversation_id,
                message_id,
                customer_identifier: request.customer_identifier.clone(),
                message: request.message.clone(),
                variables,
                assistant,
            }),
        })
    })
    .await
}

diesel::define_sql_function! {
    /// PostgreSQL's `nextval(sequence)`.
    fn nextval(sequence: diesel::sql_types::Text) -> Int8;
}

/// Renews the turn's lease (`ANYREPLY_REPLY_LEASE_SECS`, past which a stopped process's reply
/// is given up) and the request's idempotency claim, every third of the lease, for as long as
/// it is polled: run it beside the work it covers.
pub async fn hold_lease(app: &App, turn: &Turn, claim: Option<&Claim>) -> std::convert::Infallible {
    let lease = app.settings.reply_lease;
    let mut interval = tokio::time::interval(lease / 3);
    loop {
        interval.tick().await;
        let renewed = async {
            // Late renewals are useless: wait no longer than the renewal period for a connection.
            let mut conn = app.db_within(lease / 3).await?;
            diesel::sql_query("UPDATE pending_replies SET lease_until = now() + make_interval(secs => $2) WHERE message_id = $1")
                .bind::<Int8, _>(turn.message_id)
                .bind::<Double, _>(lease.as_secs_f64())
                .execute(&mut conn)
                .await?;
            if let Some(claim) = claim {
                claim.renew(&mut conn, lease).await?;
            }
            Ok::<_, ApiError>(())
        };
        if let Err(error) = renewed.await {
            tracing::warn!(?error.code, "could not renew a reply's lease");
        }
    }
}

#[derive(QueryableByName)]
struct TurnState {
    /// Our own message is still queued (not reclaimed as abandoned).
    #[diesel(sql_type = Bool)]
    queued: bool,
    /// An earlier message of the conversation is being answered.
    #[diesel(sql_type = Bool)]
    blocked: bool,
    /// An earlier message was left behind by a process that died.
    #[diesel(sql_type = Bool)]
    abandoned: bool,
}

const POLL_START: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(250);

/// Returns once every earlier message of the conversation has its reply (or was abandoned),
/// renewing this message's lease meanwhile. Borrows a connection only for each check.
pub async fn wait_for_turn(app: &App, turn: &Turn) -> ApiResult<()> {
    let lease = app.settings.reply_lease.as_secs_f64();
    let mut pause = POLL_START;
    loop {
        let state: TurnState = {
            let mut conn = app.db().await?;
            diesel::sql_query(
                "WITH renewed AS (
                     UPDATE pending_replies SET lease_until = now() + make_interval(secs => $3)
                     WHERE message_id = $2 RETURNING 1)
                 SELECT EXISTS (SELECT 1 FROM renewed) AS queued,
                        EXISTS (SELECT 1 FROM pending_replies WHERE conversation_id = $1
                                AND message_id < $2 AND lease_until > now()) AS blocked,
                        EXISTS (SELECT 1 FROM pending_replies WHERE conversation_id = $1
                                AND message_id < $2 AND lease_until <= now()) AS abandoned",
            )
            .bind::<SqlUuid, _>(turn.conversation_id)
            .bind::<Int8, _>(turn.message_id)
            .bind::<Double, _>(lease)
            .get_result(&mut conn)
            .await?
        };
        if !state.queued {
            // Our lease ran out and another process reclaimed the message.
            return Err(ApiError::new(ErrorCode::ServiceUnavailable));
        }
        if !state.blocked {
            if state.abandoned {
                reclaim_expired(app, Some((turn.conversation_id, turn.message_id))).await?;
            }
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(POLL_MAX);
    }
}

/// What the model produced for a turn.
#[derive(Debug)]
pub struct Reply<'a> {
    pub text: &'a str,
    pub function_calls: &'a [FunctionCall],
    pub cost: Money,
    pub usage: TokenUsage,
}

/// Records the reply, settles its cost against the reservation and stores the answer under the
/// request's idempotency `claim`, in one transaction. The charge never takes the balance below
/// zero.
pub async fn settle(
    app: &App,
    turn: &Turn,
    reply: &Reply<'_>,
    claim: Option<&Claim>,
) -> ApiResult<()> {
    let mut conn = app.db().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let pending: Option<(i64, i64)> =
            diesel::delete(pending_replies::table.find(turn.message_id))
                .returning((pending_replies::account_id, pending_replies::hold))
                .get_result(conn)
                .await
                .optional()?;
        let Some((account_id, hold)) = pending else {
            return Err(ApiError::new(ErrorCode::ServiceUnavailable));
        };
        // Lock order, as in `admit`: the conversation, then the account.
        diesel::update(conversations::table.find(turn.conversation_id))
            .set((
                conversations::message_count.eq(conversations::message_count + 1),
                conversations::variables.eq(conversations::variables.concat(&turn.variables)),
                conversations::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        let balance: i64 = accounts::table
            .find(account_id)
            .select(accounts::balance)
            .for_update()
            .get_result(conn)
            .await?;
        let available = balance.saturating_add(hold);
        let charged = reply.cost.subunits().min(available);
        diesel::update(accounts::table.find(account_id))
            .set(accounts::balance.eq(available - charged))
            .execute(conn)
            .await?;
        diesel::update(conversations::table.find(turn.conversation_id))
            .set(conversations::total_cost.eq(conversations::total_cost + charged))
            .execute(conn)
            .await?;
        diesel::insert_into(messages::table)
            .values((
                messages::conversation_id.eq(turn.conversation_id),
                messages::turn_id.eq(turn.message_id),
                messages::role.eq(ROLE_ASSISTANT),
                messages::content.eq(reply.text),
                messages::function_calls
                    .eq(serde_json::to_value(reply.function_calls).unwrap_or_default()),
                messages::cost.eq(charged),
                messages::prompt_tokens
                    .eq(i32::try_from(reply.usage.prompt_tokens).unwrap_or(i32::MAX)),
                messages::completion_tokens
                    .eq(i32::try_from(reply.usage.completion_tokens).unwrap_or(i32::MAX)),
            ))
            .execute(conn)
            .await?;
        if let Some(claim) = claim {
            let answer = GenerateReplyResponse {
                success: true,
                conversation_id: turn.conversation_id,
                customer_identifier: turn.customer_identifier.clone(),
                reply: reply.text.to_owned(),
                function_calls: reply.function_calls.to_vec(),
                ai_disabled: false,
            };
            claim.complete(conn, StatusCode::OK, &answer).await?;
        }
        Ok(())
    })
    .await
}

/// Gives up a turn whose reply failed: the reservation is refunded and the customer's
/// message removed, so the failed call leaves no trace and a retry starts clean.
pub async fn abandon(app: &App, turn: &Turn) -> ApiResult<()> {
    let mut conn = app.db().await?;
    release(&mut conn, &[turn.message_id]).await
}

/// Releases turns whose lease ran out: of one conversation before a message, or everywhere.
pub async fn reclaim_expired(app: &App, before: Option<(Uuid, i64)>) -> ApiResult<usize> {
    let mut conn = app.db().await?;
    let mut query = pending_replies::table
        .filter(pending_replies::lease_until.le(diesel::dsl::now))
        .select(pending_replies::message_id)
        .into_boxed();
    if let Some((conversation_id, message_id)) = before {
        query = query
            .filter(pending_replies::conversation_id.eq(conversation_id))
            .filter(pending_replies::message_id.lt(message_id));
    }
    let expired: Vec<i64> = query.load(&mut conn).await?;
    if !expired.is_empty() {
        tracing::warn!(
            count = expired.len(),
            "reclaiming replies abandoned by a stopped process"
        );
        release_where(&mut conn, &expired, true).await?;
    }
    Ok(expired.len())
}

/// Refunds and removes the queued replies of `message_ids` that are still pending.
pub async fn release(conn: &mut AsyncPgConnection, message_ids: &[i64]) -> ApiResult<()> {
    release_where(conn, message_ids, false).await
}

/// [`release`], of the turns among `message_ids` whose lease has run out (`expired_only`: a
/// renewal that landed since they were found keeps its turn), or of all of them.
async fn release_where(
    conn: &mut AsyncPgConnection,
    message_ids: &[i64],
    expired_only: bool,
) -> ApiResult<()> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        // Deleting first makes concurrent releases of one turn harmless: only one gets the row.
        let returned = (
            pending_replies::message_id,
            pending_replies::conversation_id,
            pending_replies::account_id,
            pending_replies::hold,
        );
        let chosen = pending_replies::table.filter(pending_replies::message_id.eq_any(message_ids));
        let mut released: Vec<(i64, Uuid, i64, i64)> = if expired_only {
            diesel::delete(chosen.filter(pending_replies::lease_until.le(diesel::dsl::now)))
                .returning(returned)
                .get_results(conn)
                .await?
        } else {
            diesel::delete(chosen)
                .returning(returned)
                .get_results(conn)
                .await?
        };
        // Lock order, as in `admit` and `settle`: conversations, then accounts.
        released.sort_by_key(|&(message_id, conversation_id, _, _)| (conversation_id, message_id));
        for (message_id, conversation_id, account_id, hold) in released {
            diesel::update(conversations::table.find(conversation_id))
                .set(conversations::message_count.eq(conversations::message_count - 1))
                .execute(conn)
                .await?;
            diesel::update(accounts::table.find(account_id))
                .set(accounts::balance.eq(accounts::balance + hold))
                .execute(conn)
                .await?;
            diesel::delete(messages::table.find(message_id))
                .execute(conn)
                .await?;
        }
        Ok(())
    })
    .await
}
