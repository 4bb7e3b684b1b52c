//! End to end: a real MQTT client (rumqttc) against the broker with the
//! WebHook on, and a real HTTP server receiving the requests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald_broker::config::Config;
use herald_webhook::listen::{self, Received};
use herald_webhook::{WebHook, WebhookConfig};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, MqttOptions};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

async fn next_body(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Received>) -> Value {
    let r = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a request within the wait")
        .expect("receiver open");
    serde_json::from_slice(&r.body).expect("JSON body")
}

#[tokio::test]
async fn connect_subscribe_publish_disconnect_reach_the_web_service() {
    let (receiver, mut rx) = listen::channel("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let mut config = Config::default();
    config.listener.bind = vec!["127.0.0.1:0".parse().unwrap()];
    config.sys.interval = 0;
    let server = herald_broker::start(config).await.unwrap();
    let conf = format!(
        "web.hook.url = http://{}/hook\n\
         web.hook.spool.mode = memory\n\
         web.hook.rule.client.connect.1 = {{\"action\": \"on_client_connect\"}}\n\
         web.hook.rule.session.subscribed.1 = {{\"action\": \"on_session_subscribed\"}}\n\
         web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\"}}\n\
         web.hook.rule.client.disconnected.1 = {{\"action\": \"on_client_disconnected\"}}\n",
        receiver.addr
    );
    let whc = WebhookConfig::parse(&conf, "test.conf").unwrap();
    let dir = std::env::temp_dir();
    let webhook = WebHook::start(&whc, &dir, &server.broker).unwrap();

    let addr = server.local_addrs[0];
    let mut opts = MqttOptions::new("c1", addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let connect = next_body(&mut rx).await;
    assert_eq!(connect["action"], "client_connect");
    assert_eq!(connect["clientid"], "c1");
    assert_eq!(connect["username"], "undefined");
    assert_eq!(connect["ipaddress"], "127.0.0.1");
    assert_eq!(connect["keepalive"], 60);
    assert_eq!(connect["proto_ver"], 5);

    client.subscribe("TopicA", QoS::ExactlyOnce).await.unwrap();
    let sub = next_body(&mut rx).await;
    assert_eq!(sub["action"], "session_subscribed");
    assert_eq!(sub["topic"], "TopicA");
    assert_eq!(
        sub["opts"],
        serde_json::json!({"qos":2,"nl":0,"rap":0,"rh":0})
    );

    client
        .publish("TopicA", QoS::AtLeastOnce, false, "Payload...")
        .await
        .unwrap();
    let publish = next_body(&mut rx).await;
    assert_eq!(publish["action"], "message_publish");
    assert_eq!(publish["from_client_id"], "c1");
    assert_eq!(publish["payload"], "Payload...");
    assert_eq!(publish["qos"], 1);

    client.disconnect().await.unwrap();
    let gone = next_body(&mut rx).await;
    assert_eq!(gone["action"], "client_disconnected");
    assert_eq!(gone["reason"], "normal");
    let _ = pump.await;
    webhook.shutdown(Duration::from_secs(1)).await;
    server.shutdown().await;
}
