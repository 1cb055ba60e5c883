// Validate KEDA objects (a JSON list on stdin) with the schema validators @kubernetes-models/keda
// publishes for KEDA's keda.sh/v1alpha1 API; prints one {kind, name, errors} per object.
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const results = JSON.parse(Buffer.concat(chunks).toString("utf8")).map((object) => {
  const Model = keda[object.kind];
  const name = object.metadata?.name ?? null;
  if (typeof Model !== "function") return { kind: object.kind, name, errors: [`no KEDA kind ${object.kind}`] };
  try {
    new Model(object).validate();
    return { kind: object.kind, name, errors: [] };
  } catch (error) {
    return { kind: object.kind, name, errors: [String(error.message ?? error)] };
  }
});
process.stdout.write(JSON.stringify(results));
