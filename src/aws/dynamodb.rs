//! The broker's DynamoDB state store: one item per record, `id` (string key) and `doc`
//! (the JSON document).

use crate::broker::store::StateStore;
use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

pub struct DynamoStore {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl DynamoStore {
    pub fn new(sdk: &aws_config::SdkConfig, table: &str) -> DynamoStore {
        DynamoStore {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.to_string(),
        }
    }
}

impl StateStore for DynamoStore {
    async fn get(&self, key: &str) -> Result<Option<Value>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DynamoDB {}: {}", self.table, super::describe(&e)))?;
        match out.item().and_then(|i| i.get("doc")) {
            Some(AttributeValue::S(s)) => Ok(Some(serde_json::from_str(s)?)),
            _ => Ok(None),
        }
    }

    async fn put(&self, key: &str, doc: &Value) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(key.to_string()))
            .item("doc", AttributeValue::S(serde_json::to_string(doc)?))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DynamoDB {}: {}", self.table, super::describe(&e)))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(key.to_string()))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DynamoDB {}: {}", self.table, super::describe(&e)))?;
        Ok(())
    }
}
