// Package xds serves Sluice's traffic plans to the data plane over the xDS
// protocol and reports which proxies have applied them.
//
// Three parts, each usable alone:
//
//   - Translate turns traffic plans (rollout/plan) and an EndpointSource into
//     Envoy v3 resources, once per client Group: Envoy sidecars get a real
//     listener per service port whose routes come over RDS; proxyless gRPC
//     clients get API listeners named after the target host with the routes
//     inline. Translate is a pure function.
//   - Server is a go-control-plane ADS server (state of the world and
//     delta on one gRPC server). Publish translates, versions every resource
//     type by a content hash, validates and checks consistency, and only then
//     sets one snapshot per group, which every node of the group shares.
//   - The tracker, fed by the server's stream callbacks, records per stream
//     and per resource type what each node ACKed and NACKed, and answers
//     "has every subscribed node applied plan version V of service S?"
//     (Status, Wait; Statuses for many services at once, StatusChanged
//     to hear of every change), which is the acknowledgement the engine
//     waits for.
//
// docs/xds.md explains the decisions behind the resource shapes, what
// proxyless gRPC drops, and how acknowledgement is computed.
package xds
