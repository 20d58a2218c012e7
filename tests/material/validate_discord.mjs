// Validate JSON documents against Discord's published zod schemas (discord-api-spec).
//
// stdin:  [{"schema": "<ExportName>", "document": {...}, "strict": true}, ...]
// stdout: [{"ok": true|false, "issues": [...]}, ...]   (one result per item, same order)
//
// The schemas come from `make material` (.cache/material/node_modules, zod 4 beside
// discord-api-spec). Pass the path of build/discord-api-spec.zod.js as the first argument
// or in VALINE_DISCORD_SPEC; by default it is found relative to this file.
//
// zod's objects strip keys they do not know instead of failing, so a misspelt field
// ("embed" for "embeds") would pass. With "strict" (the default) every key the schema
// dropped is reported as an "unrecognized_keys" issue.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const specPath =
  process.argv[2] ||
  process.env.VALINE_DISCORD_SPEC ||
  resolve(here, "../../.cache/material/node_modules/discord-api-spec/build/discord-api-spec.zod.js");
const spec = await import(pathToFileURL(specPath).href);

function dropped(input, output, path, issues) {
  if (Array.isArray(input) && Array.isArray(output)) {
    input.forEach((item, i) => dropped(item, output[i], [...path, i], issues));
  } else if (input && output && typeof input === "object" && typeof output === "object") {
    const keys = Object.keys(input).filter((key) => !(key in output));
    if (keys.length) issues.push({ code: "unrecognized_keys", path, keys, message: `Unrecognized key(s): ${keys.join(", ")}` });
    for (const key of Object.keys(input)) if (key in output) dropped(input[key], output[key], [...path, key], issues);
  }
}

function check({ schema, document, strict = true }) {
  const zschema = spec[schema];
  if (!zschema || typeof zschema.safeParse !== "function") {
    return { ok: false, error: `unknown schema ${schema}`, issues: [] };
  }
  const result = zschema.safeParse(document);
  if (!result.success) {
    const issues = result.error.issues.map(({ code, path, message }) => ({ code, path, message }));
    return { ok: false, issues };
  }
  const issues = [];
  if (strict) dropped(document, result.data, [], issues);
  return { ok: issues.length === 0, issues };
}

const items = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(items.map(check)));
