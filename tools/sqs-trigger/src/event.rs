//! The SQS event exactly as Lambda's event source mapping sends it, built from the
//! messages `ReceiveMessage` returned.
//!
//! Own serde structs rather than `aws_lambda_events`' ones: those serialise absent
//! values as `null` (`"binaryValue": null`, `"md5OfMessageAttributes": null`), while
//! AWS leaves such keys out. The JSON written here deserialises into
//! `aws_lambda_events::event::sqs::SqsEvent` (the tests check that).

use std::collections::BTreeMap;

use aws_lambda_events::encodings::Base64Data;
use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use serde::{Deserialize, Serialize};

/// `eventSource` of every SQS record.
pub const EVENT_SOURCE: &str = "aws:sqs";

/// The event one invocation receives: `{"Records": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsEvent {
    /// The batch, in the order the messages were received.
    #[serde(rename = "Records")]
    pub records: Vec<SqsRecord>,
}

/// One message of the batch, with AWS's field names and order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsRecord {
    /// The SQS message id; what `batchItemFailures[].itemIdentifier` names.
    pub message_id: String,
    /// Receipt handle of this receive (the trigger deletes with it).
    pub receipt_handle: String,
    /// The message body, unchanged.
    pub body: String,
    /// System attributes as SQS returned them (`ApproximateReceiveCount`, `SentTimestamp`,
    /// `SenderId`, `ApproximateFirstReceiveTimestamp`, and for FIFO queues
    /// `SequenceNumber`, `MessageGroupId`, `MessageDeduplicationId`, ...).
    pub attributes: BTreeMap<String, String>,
    /// Message attributes: `{name: {stringValue?, binaryValue?, stringListValues,
    /// binaryListValues, dataType}}`.
    pub message_attributes: BTreeMap<String, SqsMessageAttribute>,
    /// MD5 of the body, as SQS computed it.
    pub md5_of_body: String,
    /// MD5 of the message attributes; only present when the message has some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_of_message_attributes: Option<String>,
    /// Always `aws:sqs`.
    pub event_source: String,
    /// `arn:aws:sqs:<region>:<account>:<queue name>`.
    #[serde(rename = "eventSourceARN")]
    pub event_source_arn: String,
    /// Region of the queue.
    pub aws_region: String,
}

/// One message attribute as it appears in the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsMessageAttribute {
    /// For `String` and `Number` attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// For `Binary` attributes, base64 encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<Base64Data>,
    /// Reserved by SQS; always present, normally empty.
    #[serde(default)]
    pub string_list_values: Vec<String>,
    /// Reserved by SQS; always present, normally empty.
    #[serde(default)]
    pub binary_list_values: Vec<Base64Data>,
    /// `String`, `Number`, `Binary`, optionally with a custom suffix (`Number.int`).
    pub data_type: String,
}

/// Where the records come from: fills `eventSourceARN` and `awsRegion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    /// `eventSourceARN` of every record.
    pub queue_arn: String,
    /// `awsRegion` of every record.
    pub region: String,
}

impl EventSource {
    /// The record for one received message; `None` when SQS left out the message id or
    /// the receipt handle (such a message can be neither reported nor deleted).
    pub fn record(&self, message: Message) -> Option<SqsRecord> {
        let Message {
            message_id,
            receipt_handle,
            md5_of_body,
            body,
            attributes,
            md5_of_message_attributes,
            message_attributes,
            ..
        } = message;
        let message_id = message_id.filter(|id| !id.is_empty())?;
        let receipt_handle = receipt_handle.filter(|h| !h.is_empty())?;
        let attributes = attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name.as_str().to_owned(), value))
            .collect();
        let message_attributes = message_attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name, attribute(value)))
            .collect::<BTreeMap<_, _>>();
        Some(SqsRecord {
            message_id,
            receipt_handle,
            body: body.unwrap_or_default(),
            attributes,
            md5_of_message_attributes: md5_of_message_attributes
                .filter(|_| !message_attributes.is_empty()),
            message_attributes,
            md5_of_body: md5_of_body.unwrap_or_default(),
            event_source: EVENT_SOURCE.to_owned(),
            event_source_arn: self.queue_arn.clone(),
            aws_region: self.region.clone(),
        })
    }
}

fn attribute(value: MessageAttributeValue) -> SqsMessageAttribute {
    let base64 = |blob: aws_sdk_sqs::primitives::Blob| {
        // `Base64Data` is #[non_exhaustive]: start from the default and fill it.
        let mut data = Base64Data::default();
        data.extend_from_slice(blob.as_ref());
        data
    };
    SqsMessageAttribute {
        string_value: value.string_value,
        binary_value: value.binary_value.map(base64),
        string_list_values: value.string_list_values.unwrap_or_default(),
        binary_list_values: value
            .binary_list_values
            .unwrap_or_default()
            .into_iter()
            .map(base64)
            .collect(),
        data_type: value.data_type,
    }
}

/// `arn:<partition>:sqs:<region>:<account>:<name>` for a queue URL of the form
/// `http(s)://host/<account>/<name>`; `None` for anything else.
pub fn queue_arn_from_url(queue_url: &str, region: &str) -> Option<String> {
    let (_scheme, rest) = queue_url.split_once("://")?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let mut segments = rest.trim_end_matches('/').split('/');
    let host = segments.next()?;
    let account = segments.next()?;
    let name = segments.next()?;
    if host.is_empty() || account.is_empty() || name.is_empty() || segments.next().is_some() {
        return None;
    }
    let partition = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    Some(format!("arn:{partition}:sqs:{region}:{account}:{name}"))
}

/// The region in an AWS queue URL's host (`sqs.<region>.amazonaws.com`), if any.
pub fn region_from_url(queue_url: &str) -> Option<String> {
    let (_scheme, rest) = queue_url.split_once("://")?;
    let host = rest.split(['/', ':']).next()?;
    let mut labels = host.split('.');
    match (labels.next(), labels.next(), labels.next()) {
        (Some("sqs"), Some(region), Some("amazonaws")) if !region.is_empty() => {
            Some(region.to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::MessageSystemAttributeName;

    #[test]
    fn arn_from_url() {
        assert_eq!(
            queue_arn_from_url(
                "http://127.0.0.1:4566/123456789012/outbound-messages",
                "us-east-1"
            )
            .as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:outbound-messages")
        );
        assert_eq!(
            queue_arn_from_url(
                "https://sqs.eu-west-1.amazonaws.com/000000000000/q.fifo/",
                "eu-west-1"
            )
            .as_deref(),
            Some("arn:aws:sqs:eu-west-1:000000000000:q.fifo")
        );
        assert_eq!(
            queue_arn_from_url("https://sqs.cn-north-1.amazonaws.com.cn/1/q", "cn-north-1")
                .as_deref(),
            Some("arn:aws-cn:sqs:cn-north-1:1:q")
        );
        for bad in [
            "",
            "q",
            "http://h/1",
            "http://h/1/",
            "http://h//q",
            "http://h/1/q/x",
            "http:///1/q",
        ] {
            assert_eq!(queue_arn_from_url(bad, "us-east-1"), None, "{bad}");
        }
    }

    #[test]
    fn region_from_aws_url() {
        assert_eq!(
            region_from_url("https://sqs.eu-west-1.amazonaws.com/1/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_from_url("http://127.0.0.1:4566/1/q"), None);
    }

    fn source() -> EventSource {
        EventSource {
            queue_arn: "arn:aws:sqs:us-east-1:123456789012:q".to_owned(),
            region: "us-east-1".to_owned(),
        }
    }

    #[test]
    fn record_json_matches_aws() {
        let message = Message::builder()
            .message_id("059f36b4-87a3-44ab-83d2-661975830a7d")
            .receipt_handle("AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a")
            .body("test")
            .md5_of_body("098f6bcd4621d373cade4e832627b4f6")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1545082649183")
            .attributes(
                MessageSystemAttributeName::SenderId,
                "AIDAIENQZJOLO23YVJ4VO",
            )
            .attributes(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                "1545082649185",
            )
            .build();
        let record = source().record(message).expect("complete message");
        let json = serde_json::to_value(SqsEvent {
            records: vec![record],
        })
        .expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"Records": [{
                "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
                "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                "body": "test",
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1545082649183",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1545082649185"
                },
                "messageAttributes": {},
                "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1"
            }]})
        );
    }

    #[test]
    fn message_attributes_and_aws_lambda_events_round_trip() {
        let message = Message::builder()
            .message_id("id-1")
            .receipt_handle("rh")
            .body("{}")
            .md5_of_body("99914b932bd37a50b983c5e7c90ae93b")
            .md5_of_message_attributes("abc")
            .message_attributes(
                "accountId",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("acct_1")
                    .build()
                    .expect("data type set"),
            )
            .message_attributes(
                "raw",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![0_u8, 1, 2, 255]))
                    .build()
                    .expect("data type set"),
            )
            .build();
        let record = source().record(message).expect("complete message");
        let json = serde_json::to_value(&record).expect("serialises");
        assert_eq!(
            json["messageAttributes"]["accountId"],
            serde_json::json!({
                "stringValue": "acct_1",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String"
            })
        );
        assert_eq!(json["messageAttributes"]["raw"]["binaryValue"], "AAEC/w==");
        assert_eq!(json["md5OfMessageAttributes"], "abc");

        let event = serde_json::to_string(&SqsEvent {
            records: vec![record],
        })
        .expect("serialises");
        let parsed: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_str(&event).expect("aws_lambda_events reads it");
        let parsed = &parsed.records[0];
        assert_eq!(parsed.message_id.as_deref(), Some("id-1"));
        assert_eq!(parsed.event_source.as_deref(), Some("aws:sqs"));
        assert_eq!(
            parsed.message_attributes["raw"].binary_value.as_deref(),
            Some(&vec![0_u8, 1, 2, 255])
        );
    }

    #[test]
    fn incomplete_messages_are_skipped() {
        assert!(
            source()
                .record(Message::builder().receipt_handle("rh").build())
                .is_none()
        );
        assert!(
            source()
                .record(Message::builder().message_id("id").build())
                .is_none()
        );
    }
}
