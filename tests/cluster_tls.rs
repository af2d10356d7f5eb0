//! A real `kube::Client` (built from a Config, with its rustls connector)
//! over a real TCP connection to the fake API server, next to a reqwest
//! client: with two rustls crypto providers compiled in, building these
//! panics at run time while compiling cleanly, so only this test catches it.

use canaryd::cluster::fake::FakeApiServer;
use canaryd::cluster::tls::install_crypto_provider;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};
use tower::ServiceExt;

/// Serves the fake on a loopback port; returns its URL.
async fn serve(fake: FakeApiServer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let fake = fake.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| fake.clone().oneshot(request));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_kube_client_and_a_reqwest_client_work_side_by_side_over_a_real_connection() {
    install_crypto_provider();
    install_crypto_provider(); // twice is harmless (main and a test helper may both call it)
    let fake = FakeApiServer::new();
    let url = serve(fake.clone()).await;
    let config = kube::Config::new(url.parse().expect("url"));
    let client = kube::Client::try_from(config).expect("a kube client with its rustls connector");
    let api: Api<Deployment> = Api::namespaced(client, "shop");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web" },
        "spec": { "selector": { "matchLabels": { "app": "web" } }, "template": { "metadata": { "labels": { "app": "web" } } } }
    }))
    .expect("deployment");
    api.create(&PostParams::default(), &deployment)
        .await
        .expect("created over TCP");
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("listed")
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    assert_eq!(names, ["web"]);
    // reqwest (Prometheus, alerts) in the same process.
    let http = reqwest::Client::builder()
        .build()
        .expect("a reqwest client with rustls");
    let body = http
        .get(format!(
            "{url}/apis/apps/v1/namespaces/shop/deployments/web"
        ))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    assert!(body.contains("\"name\":\"web\""), "{body}");
}
