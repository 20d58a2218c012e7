// Validate GraphQL documents against GitHub's published GraphQL schema (@octokit/graphql-schema).
//
// stdin:  ["query { ... }", {"query": "mutation($a: T!) { ... }", "variables": {...}}, ...]
// stdout: [["error message", ...], ...]   (one list per item, same order; [] = valid)
//
// A document is checked with the package's own `validate(document)` (graphql-js's rules
// against GitHub's schema); a syntax error is reported as that document's only message.
// When an item also carries "variables", they are coerced to the declared variable
// types as GitHub would (unknown input fields, missing required ones, wrong types).
//
// The package comes from `make material` (.cache/material/node_modules). Pass the path of
// its index.js as the first argument or in VALINE_GRAPHQL_SCHEMA; by default it is found
// relative to this file.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const packagePath =
  process.argv[2] ||
  process.env.VALINE_GRAPHQL_SCHEMA ||
  resolve(here, "../../.cache/material/node_modules/@octokit/graphql-schema/index.js");
const { validate, schema } = await import(pathToFileURL(packagePath).href);
// The very `graphql` the package resolves (its objects must not meet another copy's).
const graphql = createRequire(packagePath)("graphql");
let githubSchema; // built on first use: only items with variables need it

function check(item) {
  const { query, variables } = typeof item === "string" ? { query: item } : item;
  let messages;
  try {
    messages = validate(query).map((error) => error.message);
  } catch (error) {
    return [String(error.message ?? error)]; // graphql-tag throws on a syntax error
  }
  if (messages.length || variables === undefined) return messages;
  githubSchema ??= graphql.buildClientSchema(schema.json);
  for (const definition of graphql.parse(query).definitions) {
    if (definition.kind !== graphql.Kind.OPERATION_DEFINITION) continue;
    const declared = definition.variableDefinitions ?? [];
    const { errors = [] } = graphql.getVariableValues(githubSchema, declared, variables);
    messages.push(...errors.map((error) => error.message));
  }
  return messages;
}

const items = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(items.map(check)));
