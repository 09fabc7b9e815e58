// Validates a Teams app manifest against Microsoft's JSON schema of its
// manifestVersion, as shipped in the npm package @microsoft/app-manifest
// (installed by TestAppPackageManifestSchema). Usage:
//   node validate-manifest.js <node_modules dir> <manifest.json>
// Prints the errors and exits 1 when the manifest is invalid.
const path = require("path");
const fs = require("fs");
const [modules, manifestPath] = process.argv.slice(2);
const req = (m) => require(path.join(modules, m));
const Ajv = req("ajv-draft-04");
const addFormats = req("ajv-formats");
const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
const schemaPath = path.join(modules, "@microsoft/app-manifest/build/json-schemas/teams",
  "v" + manifest.manifestVersion, "MicrosoftTeams.schema.json");
// The published schemas use "\a" in one pattern, which JavaScript regular
// expressions reject; Microsoft's own validator makes the same replacement.
const schema = JSON.parse(fs.readFileSync(schemaPath, "utf8").replace(/\\a/g, "\\x07"));
const ajv = new Ajv({ allErrors: true, strict: false });
addFormats(ajv);
const validate = ajv.compile(schema);
if (!validate(manifest)) {
  for (const e of validate.errors) console.log(`${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
  process.exit(1);
}
console.log(`valid against ${path.relative(modules, schemaPath)}`);
