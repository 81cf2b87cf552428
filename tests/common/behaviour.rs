//! The behaviour every `Directory` must show; run against the embedded store and against
//! Cognito (moto) so both behave the same.

use pennyworth::auth::{api_key, issue_key};
use pennyworth::directory::{
    Directory, DirectoryError, MAX_KEYS_PER_USER, NewUser, Password, UserUpdate,
};

fn new_user(name: &str, groups: &[&str]) -> NewUser {
    NewUser {
        username: name.into(),
        email: Some(format!("{name}@example.com")),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

pub async fn suite(d: &dyn Directory) {
    // Users and groups.
    let alice = d
        .create_user(new_user("alice", &["users", "developers"]))
        .await
        .expect("create alice");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.groups, vec!["developers", "users"]);
    assert!(alice.enabled);
    assert!(!alice.id.is_empty());
    assert!(matches!(
        d.create_user(new_user("alice", &[])).await,
        Err(DirectoryError::UserExists(_))
    ));
    assert!(matches!(
        d.create_user(new_user("mallory", &["wizards"])).await,
        Err(DirectoryError::NoSuchGroup(_))
    ));
    d.create_user(new_user("bob", &["users"]))
        .await
        .expect("create bob");
    let got = d
        .get_user("alice")
        .await
        .expect("get")
        .expect("alice exists");
    assert_eq!(got.id, alice.id);
    assert_eq!(got.email.as_deref(), Some("alice@example.com"));
    assert_eq!(got.groups, vec!["developers", "users"]);
    assert!(d.get_user("nobody").await.expect("get").is_none());
    let names: Vec<String> = d
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, vec!["alice", "bob"]);
    assert_eq!(d.user_count().await.expect("count"), 2);

    // Keys: stored as hashes, found by id with their owner.
    let (record, key) = issue_key(d, "alice", "laptop", None).await.expect("issue");
    let presented = api_key::parse(key.expose()).expect("parse");
    let found = d
        .find_key("alice", presented.id)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.key, record);
    assert_eq!(found.user.username, "alice");
    assert_eq!(found.user.groups, vec!["developers", "users"]);
    assert!(api_key::matches(&presented, &found.key.hash));
    assert!(
        d.find_key("bob", presented.id)
            .await
            .expect("find")
            .is_none(),
        "wrong owner"
    );
    assert!(
        d.find_key("alice", "YWxpY2U.0000000000000000")
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        d.find_key("nobody", "bm9ib2R5.0000000000000000")
            .await
            .expect("find")
            .is_none()
    );
    let listed = d.list_keys("alice").await.expect("list keys");
    assert_eq!(listed, vec![record.clone()]);
    assert!(d.list_keys("bob").await.expect("list keys").is_empty());

    // Rotation replaces in one step; revocation removes.
    let (rotated, _) = {
        let g = api_key::generate("alice").expect("generate");
        let r = pennyworth::directory::KeyRecord {
            id: g.id.clone(),
            owner: "alice".into(),
            name: record.name.clone(),
            hash: g.hash.to_vec(),
            last4: g.last4.clone(),
            created_at: record.created_at,
            expires_at: Some(record.created_at + 86_400),
        };
        (r, g)
    };
    assert!(
        d.replace_key("alice", &record.id, rotated.clone())
            .await
            .expect("replace")
    );
    assert!(
        !d.replace_key("alice", &record.id, rotated.clone())
            .await
            .expect("replace again")
    );
    assert_eq!(
        d.list_keys("alice").await.expect("list"),
        vec![rotated.clone()]
    );
    assert!(d.delete_key("alice", &rotated.id).await.expect("delete"));
    assert!(
        !d.delete_key("alice", &rotated.id)
            .await
            .expect("delete again")
    );
    assert!(
        d.find_key("alice", &rotated.id)
            .await
            .expect("find")
            .is_none()
    );

    // The per-user key limit.
    for i in 0..MAX_KEYS_PER_USER {
        issue_key(d, "bob", &format!("k{i}"), None)
            .await
            .expect("within limit");
    }
    assert!(matches!(
        issue_key(d, "bob", "one more", None).await,
        Err(pennyworth::auth::ProvisionError::Directory(
            DirectoryError::TooManyKeys(_)
        ))
    ));
    assert!(matches!(
        issue_key(d, "nobody", "x", None).await,
        Err(pennyworth::auth::ProvisionError::Directory(
            DirectoryError::NoSuchUser(_)
        ))
    ));

    // Updates: groups replaced, enabled toggled.
    let updated = d
        .update_user(
            "alice",
            UserUpdate {
                groups: Some(vec!["admins".into()]),
                enabled: Some(false),
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.groups, vec!["admins"]);
    assert!(!updated.enabled);
    let (_, key2) = issue_key(d, "alice", "after", None).await.expect("issue");
    let p2 = api_key::parse(key2.expose()).expect("parse");
    let found = d
        .find_key("alice", p2.id)
        .await
        .expect("find")
        .expect("found");
    assert!(!found.user.enabled);
    assert_eq!(found.user.groups, vec!["admins"]);
    assert!(matches!(
        d.update_user(
            "nobody",
            UserUpdate {
                groups: None,
                enabled: Some(true)
            }
        )
        .await,
        Err(DirectoryError::NoSuchUser(_))
    ));
    assert!(matches!(
        d.update_user(
            "alice",
            UserUpdate {
                groups: Some(vec!["wizards".into()]),
                enabled: None
            }
        )
        .await,
        Err(DirectoryError::NoSuchGroup(_))
    ));

    // Passwords follow one policy.
    d.set_password("alice", &Password("Val1d-password!".into()))
        .await
        .expect("password");
    assert!(matches!(
        d.set_password("alice", &Password("weak".into())).await,
        Err(DirectoryError::Invalid(_))
    ));
    assert!(
        d.set_password("nobody", &Password("Val1d-password!".into()))
            .await
            .is_err()
    );

    // Delete takes the keys along.
    assert!(d.delete_user("alice").await.expect("delete"));
    assert!(!d.delete_user("alice").await.expect("delete again"));
    assert!(d.find_key("alice", p2.id).await.expect("find").is_none());
    assert!(d.get_user("alice").await.expect("get").is_none());
}
