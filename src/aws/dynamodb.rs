//! A DynamoDB table of versioned JSON documents: one item per key, `id` (the string hash
//! key), `doc` (the JSON document) and `v` (its version, a number). Every write is
//! conditional on the version the writer read, so two writers never both win: the
//! broker's state store (`broker::store`) builds on this. Knows nothing of the broker.
//!
//! Condition expressions and `ConditionalCheckFailedException`:
//! https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html

use anyhow::{Result, anyhow};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;

pub struct Table {
    pub client: aws_sdk_dynamodb::Client,
    pub name: String,
}

/// A write's outcome: done, or the item was not at the expected version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Done,
    Conflict,
}

fn conflict<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl Table {
    pub fn new(sdk: &aws_config::SdkConfig, name: &str) -> Table {
        Table {
            client: aws_sdk_dynamodb::Client::new(sdk),
            name: name.to_string(),
        }
    }

    /// The document and its version (0 for an item written before versions existed).
    pub async fn get(&self, key: &str) -> Result<Option<(String, u64)>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("id", AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| anyhow!("DynamoDB {}: {}", self.name, super::describe(&e)))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let Some(AttributeValue::S(doc)) = item.get("doc") else {
            return Ok(None);
        };
        let v = match item.get("v") {
            Some(AttributeValue::N(n)) => n
                .parse()
                .map_err(|_| anyhow!("DynamoDB {}: item {key} has version {n}", self.name))?,
            _ => 0,
        };
        Ok(Some((doc.clone(), v)))
    }

    /// Writes `doc` at version `expected + 1` if the item is at `expected` (`None`: only
    /// if there is no item).
    pub async fn put(&self, key: &str, doc: &str, expected: Option<u64>) -> Result<Write> {
        let next = expected.map_or(1, |v| v + 1);
        let mut req = self
            .client
            .put_item()
            .table_name(&self.name)
            .item("id", AttributeValue::S(key.to_string()))
            .item("doc", AttributeValue::S(doc.to_string()))
            .item("v", AttributeValue::N(next.to_string()));
        req = match expected {
            None => req.condition_expression("attribute_not_exists(id)"),
            Some(0) => req.condition_expression("attribute_exists(id) AND attribute_not_exists(v)"),
            Some(v) => req
                .condition_expression("v = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        match req.send().await {
            Ok(_) => Ok(Write::Done),
            Err(e) if e.as_service_error().is_some_and(conflict) => Ok(Write::Conflict),
            Err(e) => Err(anyhow!("DynamoDB {}: {}", self.name, super::describe(&e))),
        }
    }

    /// Deletes the item if it is at version `expected`.
    pub async fn delete(&self, key: &str, expected: u64) -> Result<Write> {
        let mut req = self
            .client
            .delete_item()
            .table_name(&self.name)
            .key("id", AttributeValue::S(key.to_string()));
        req = match expected {
            0 => req.condition_expression("attribute_exists(id) AND attribute_not_exists(v)"),
            v => req
                .condition_expression("v = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        match req.send().await {
            Ok(_) => Ok(Write::Done),
            Err(e) if e.as_service_error().is_some_and(conflict) => Ok(Write::Conflict),
            Err(e) => Err(anyhow!("DynamoDB {}: {}", self.name, super::describe(&e))),
        }
    }
}
