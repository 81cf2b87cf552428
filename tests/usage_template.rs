//! The template's usage ledger: an on-demand table with TTL and point-in-time recovery, the
//! function pointed at it, and an IAM policy on that table only that allows exactly the
//! DynamoDB calls the store makes. (cfn-lint checks the template itself, in `.ci/run`.)

use serde_norway::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("read");
    serde_norway::from_str(&text).expect("template.yaml")
}

/// `!Tag value` as ("!Tag", value).
fn tagged(v: &Value) -> (String, String) {
    match v {
        Value::Tagged(t) => (
            t.tag.to_string(),
            t.value.as_str().expect("scalar").to_string(),
        ),
        other => panic!("not a tagged value: {other:?}"),
    }
}

#[test]
fn the_usage_table_is_on_demand_with_ttl_and_recovery() {
    let t = template();
    let table = &t["Resources"]["UsageTable"];
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    assert_eq!(table["DeletionPolicy"], "Retain");
    let p = &table["Properties"];
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(p["TimeToLiveSpecification"]["AttributeName"], "expires");
    assert_eq!(p["TimeToLiveSpecification"]["Enabled"], true);
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    let keys: Vec<(&str, &str)> = p["KeySchema"]
        .as_sequence()
        .expect("key schema")
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().expect("name"),
                k["KeyType"].as_str().expect("type"),
            )
        })
        .collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
    let vars = &t["Resources"]["Function"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        tagged(&vars["PENNYWORTH_USAGE_TABLE"]),
        ("!Ref".into(), "UsageTable".into())
    );
}

#[test]
fn the_function_may_make_exactly_the_ledger_calls_on_that_table_only() {
    let t = template();
    let policy = &t["Resources"]["UsageTablePolicy"];
    assert_eq!(policy["Type"], "AWS::IAM::RolePolicy");
    assert_eq!(
        tagged(&policy["Properties"]["RoleName"]),
        ("!Ref".into(), "FunctionRole".into())
    );
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .expect("statements");
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s["Effect"], "Allow");
    assert_eq!(
        tagged(&s["Resource"]),
        ("!GetAtt".into(), "UsageTable.Arn".into())
    );
    let allowed: BTreeSet<String> = s["Action"]
        .as_sequence()
        .expect("actions")
        .iter()
        .map(|a| a.as_str().expect("action").to_string())
        .collect();

    // The SDK operations the DynamoDB store calls, from its source.
    let source = std::fs::read_to_string(root().join("engine/usage/dynamo.rs")).expect("source");
    let mut used = BTreeSet::new();
    for (call, action) in [
        (".update_item()", "dynamodb:UpdateItem"),
        (".batch_get_item()", "dynamodb:BatchGetItem"),
        (".get_item()", "dynamodb:GetItem"),
        (".query()", "dynamodb:Query"),
        (".scan()", "dynamodb:Scan"),
        (".put_item()", "dynamodb:PutItem"),
        (".delete_item()", "dynamodb:DeleteItem"),
        (".batch_write_item()", "dynamodb:BatchWriteItem"),
        (".transact_write_items()", "dynamodb:TransactWriteItems"),
    ] {
        if source.contains(call) {
            used.insert(action.to_string());
        }
    }
    assert_eq!(
        allowed, used,
        "the policy allows more or less than the store uses"
    );
    // And nowhere else in the role: no other statement names DynamoDB.
    let role = serde_norway::to_string(&t["Resources"]["FunctionRole"]).expect("role");
    assert!(
        !role.contains("dynamodb"),
        "FunctionRole grants DynamoDB elsewhere"
    );
}
