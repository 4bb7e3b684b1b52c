//! The broker routes a message between two real clients of each protocol
//! level: the minimum every other test builds on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
use common::*;

#[tokio::test]
async fn v311_publish_reaches_subscriber() {
    let server = start().await;
    let (sub, mut sub_loop, _) = v4::connect(v4::options(&server, "sub")).await;
    sub.subscribe("a/+", v4::QoS::AtLeastOnce).await.unwrap();
    v4::wait_for(&mut sub_loop, |p| {
        matches!(p, v4::Packet::SubAck(_)).then_some(())
    })
    .await;
    let (publ, mut pub_loop, _) = v4::connect(v4::options(&server, "pub")).await;
    publ.publish("a/b", v4::QoS::AtLeastOnce, false, "hi")
        .await
        .unwrap();
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let msg = v4::next_publish(&mut sub_loop).await;
    assert_eq!(msg.topic, "a/b");
    assert_eq!(&msg.payload[..], b"hi");
    assert_eq!(msg.qos, v4::QoS::AtLeastOnce);
    server.shutdown().await;
}

#[tokio::test]
async fn v5_publish_reaches_subscriber() {
    let server = start().await;
    let (sub, mut sub_loop, _) = v5::connect(v5::options(&server, "sub5")).await;
    sub.subscribe("x/#", v5::QoS::ExactlyOnce).await.unwrap();
    v5::wait_for(&mut sub_loop, |p| {
        matches!(p, v5::Packet::SubAck(_)).then_some(())
    })
    .await;
    let (publ, mut pub_loop, _) = v5::connect(v5::options(&server, "pub5")).await;
    publ.publish("x/y/z", v5::QoS::ExactlyOnce, false, "five")
        .await
        .unwrap();
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let msg = v5::next_publish(&mut sub_loop).await;
    assert_eq!(&msg.topic[..], b"x/y/z");
    assert_eq!(&msg.payload[..], b"five");
    assert_eq!(msg.qos, v5::QoS::ExactlyOnce);
    server.shutdown().await;
}
