// MQTT.js round trip: connect to argv[2] (ws:// or wss:// URL), subscribe
// to a topic, publish to it, and exit 0 once the message comes back.
// argv[3]: a CA file for wss. Exits 1 on error or after 10 s.
"use strict";
const fs = require("fs");
const mqtt = require("mqtt");

const url = process.argv[2];
const options = { clientId: "mqttjs-" + process.pid, reconnectPeriod: 0, connectTimeout: 10000 };
if (process.argv[3]) {
  options.ca = fs.readFileSync(process.argv[3]);
}
const topic = "interop/mqttjs/" + process.pid;
const payload = "hello from MQTT.js over " + url.split(":")[0];
const timer = setTimeout(() => {
  console.error("no round trip within 10 s");
  process.exit(1);
}, 10000);
const client = mqtt.connect(url, options);
client.on("error", (err) => {
  console.error("error: " + err.message);
  process.exit(1);
});
client.on("connect", () => {
  client.subscribe(topic, { qos: 1 }, (err) => {
    if (err) {
      console.error("subscribe failed: " + err.message);
      process.exit(1);
    }
    client.publish(topic, payload, { qos: 1 });
  });
});
client.on("message", (t, message) => {
  if (t === topic && message.toString() === payload) {
    // A clean close is part of the check: DISCONNECT, then the WebSocket
    // closing handshake, with no error (e.g. EPIPE) on the way.
    client.end(false, {}, () => {
      clearTimeout(timer);
      console.log("ok " + message.toString());
      process.exit(0);
    });
  }
});
