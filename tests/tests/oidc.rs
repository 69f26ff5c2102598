//! The tests' OpenID provider and kube-apiserver's trust in it: a browserless login yields an
//! ID token that authenticates the user, with name and groups, to Kubernetes; tampered or
//! garbage tokens and wrong passwords get nowhere. Real processes throughout.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use tests::ControlPlane;
use tests::controlplane::{OIDC_CLIENT_ID, OidcUser, jwt_claims, token_review};

/// Nothing listens here; the login reads the redirect to it and stops.
const CALLBACK: &str = "http://127.0.0.1:8123/auth/callback";

/// The HTTP status of a failed API call.
fn status_of(result: Result<impl std::fmt::Debug, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn id_tokens_authenticate_users_to_kubernetes() {
    let started = Instant::now();
    let cp = ControlPlane::start_with_oidc(vec![
        OidcUser::new("alice", "alice-password", &["engineering"]),
        OidcUser::new("bob", "bob-password", &["helpdesk"]),
    ])
    .await
    .expect("control plane with OpenID provider starts");
    eprintln!(
        "control plane trusting the provider ready in {:?}",
        started.elapsed()
    );
    let oidc = cp.oidc().expect("started with a provider");
    assert!(oidc.issuer().starts_with("https://127.0.0.1:"), "{oidc:?}");
    assert_eq!(oidc.client_id(), OIDC_CLIENT_ID);

    let login = Instant::now();
    let alice = oidc
        .login("alice", "alice-password", CALLBACK)
        .await
        .expect("alice logs in");
    eprintln!("alice logged in in {:?}", login.elapsed());
    let claims = alice.id_token_claims().unwrap();
    assert_eq!(claims["iss"], oidc.issuer(), "{claims}");
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(
        claims["groups"],
        serde_json::json!(["engineering"]),
        "{claims}"
    );
    assert!(
        claims["aud"]
            .as_array()
            .is_some_and(|aud| aud.iter().any(|a| a == OIDC_CLIENT_ID)),
        "{claims}"
    );

    // (a) The apiserver knows her by name and groups.
    let status = token_review(&cp.client(), &alice.id_token).await.unwrap();
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    let user = status.user.expect("a user");
    assert_eq!(user.username.as_deref(), Some("alice"));
    let groups = user.groups.unwrap_or_default();
    for group in ["engineering", "system:authenticated"] {
        assert!(
            groups.iter().any(|g| g == group),
            "{group} not in {groups:?}"
        );
    }

    // (b) Garbage, and her token with groups rewritten (signature kept), are nobody.
    let mut parts: Vec<String> = alice.id_token.split('.').map(str::to_owned).collect();
    let mut forged = claims.clone();
    forged["groups"] = serde_json::json!(["system:masters"]);
    parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
    let tampered = parts.join(".");
    assert_eq!(
        jwt_claims(&tampered).unwrap()["groups"][0],
        "system:masters"
    );
    for token in ["garbage", tampered.as_str()] {
        let status = token_review(&cp.client(), token).await.unwrap();
        assert_ne!(status.authenticated, Some(true), "{token}: {status:?}");
    }

    // (c) As a bearer token she is known but has no rights; garbage is not even known.
    let as_alice = cp.client_with_token(&alice.id_token).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(as_alice, "default");
    assert_eq!(status_of(secrets.list(&ListParams::default()).await), 403);
    let as_nobody = cp.client_with_token("garbage").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(as_nobody, "default");
    assert_eq!(status_of(secrets.list(&ListParams::default()).await), 401);

    // (d) A wrong password fails the login, saying so; the right one works (an https
    // callback this time) and brings bob's group.
    let error = oidc
        .login("bob", "not-bobs-password", CALLBACK)
        .await
        .expect_err("a wrong password fails");
    assert!(
        error.contains("\"bob\"") && error.contains("password"),
        "{error}"
    );
    let bob = oidc
        .login(
            "bob",
            "bob-password",
            "https://127.0.0.1:8124/auth/callback",
        )
        .await
        .expect("bob logs in");
    assert_eq!(
        bob.id_token_claims().unwrap()["groups"],
        serde_json::json!(["helpdesk"])
    );
    eprintln!("test done in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_user_list_fails_clearly() {
    let alice = OidcUser::new("alice", "pw", &[]);
    let error = ControlPlane::start_with_oidc(vec![alice.clone(), alice])
        .await
        .expect_err("two users named alice are refused");
    let message = error.to_string();
    assert!(
        message.contains("verdant-oidc-provider")
            && message.contains(r#"user "alice" appears twice"#),
        "{message}"
    );
}
