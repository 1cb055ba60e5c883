// Validate custom resources (a JSON list on stdin) with the schema validators that
// @kubernetes-models publishes for KEDA (keda.sh/v1alpha1) and the Prometheus Operator
// (monitoring.coreos.com/v1); prints one {kind, name, errors} per object.
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const apis = { "keda.sh/v1alpha1": keda, "monitoring.coreos.com/v1": monitoring };
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const results = JSON.parse(Buffer.concat(chunks).toString("utf8")).map((object) => {
  const Model = apis[object.apiVersion]?.[object.kind];
  const name = object.metadata?.name ?? null;
  if (typeof Model !== "function") return { kind: object.kind, name, errors: [`no schema for ${object.apiVersion} ${object.kind}`] };
  try {
    new Model(object).validate();
    return { kind: object.kind, name, errors: [] };
  } catch (error) {
    return { kind: object.kind, name, errors: [String(error.message ?? error)] };
  }
});
process.stdout.write(JSON.stringify(results));
