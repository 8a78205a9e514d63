//! `client.operators()`: the people who sign in to the console, and their roles.

use anyreply_core::wire::{
    DeletedResponse, Operator, OperatorInput, OperatorList, OperatorResponse, OperatorUpdate,
};

use crate::client::{Client, RequestOptions};
use crate::error::Error;

/// `client.operators()`.
#[derive(Debug, Clone, Copy)]
pub struct Operators<'a> {
    pub(crate) client: &'a Client,
}

impl Operators<'_> {
    /// `GET /api/user/operators`: every operator of the account, in id order.
    pub async fn list(&self) -> Result<Vec<Operator>, Error> {
        let list: OperatorList = self.client.get("api/user/operators", &[]).await?;
        Ok(list.data)
    }

    /// `POST /api/user/operators`: the answer's `password_link` (valid 24 hours, shown only
    /// now) is where the operator sets their password; pass it on.
    pub async fn create(&self, input: &OperatorInput) -> Result<OperatorResponse, Error> {
        self.create_with(input, RequestOptions::default()).await
    }

    /// [`Self::create`] with options, such as your own idempotency key.
    pub async fn create_with(
        &self,
        input: &OperatorInput,
        options: RequestOptions,
    ) -> Result<OperatorResponse, Error> {
        self.client
            .post("api/user/operators", Some(input), options)
            .await
    }

    /// `PUT /api/user/operators/{id}`: a new name or role (from their next request).
    pub async fn update(&self, id: i64, change: &OperatorUpdate) -> Result<Operator, Error> {
        let updated: OperatorResponse = self
            .client
            .put(&format!("api/user/operators/{id}"), change)
            .await?;
        Ok(updated.data)
    }

    /// `DELETE /api/user/operators/{id}`: their open console sessions end.
    pub async fn delete(&self, id: i64) -> Result<(), Error> {
        let _: DeletedResponse = self
            .client
            .delete(&format!("api/user/operators/{id}"))
            .await?;
        Ok(())
    }
}
