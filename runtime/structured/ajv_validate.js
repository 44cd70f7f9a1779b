// Validates documents against JSON Schemas with ajv (draft 2020-12), for
// runtime/structured:gemma4_constrained_test.
//
//   node ajv_validate.js INPUT.json   # INPUT: [{name, schema, docs: [text, ...]}, ...]
//
// Prints {name: {valid: N, invalid: [{doc, errors}]}, ...}. Each doc must parse with JSON.parse and
// validate. ajv-formats is not among the project's npm packages, so the formats Tessera generates
// are registered here from independent sources: Node's net.isIPv4/isIPv6, the JavaScript Date
// parser for dates and times, and the RFC 3339 / 4122 / 5321 / 1123 shapes for the rest.
'use strict';
const fs = require('fs');
const net = require('net');
const Ajv2020 = require('ajv/dist/2020').default;

function validDate(s) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(s)) return false;
  const d = new Date(s + 'T00:00:00Z');
  return !isNaN(d.getTime()) && d.toISOString().slice(0, 10) === s;
}
const TIME = /^([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(\.\d+)?(z|[+-]([01]\d|2[0-3]):[0-5]\d)$/i;
function validTime(s) {
  return TIME.test(s) && !isNaN(new Date('1970-01-01T' + s).getTime());
}
function validDateTime(s) {
  const m = /^(\d{4}-\d{2}-\d{2})[tT](.*)$/.exec(s);
  return m !== null && validDate(m[1]) && validTime(m[2]) && !isNaN(Date.parse(s));
}

const formats = {
  'date': validDate,
  'time': validTime,
  'date-time': validDateTime,
  'duration': /^P(?!$)((\d+Y)?(\d+M)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?|(\d+W)?)$/,
  'email': /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/i,
  'hostname': /^(?=.{1,253}\.?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-0-9a-z]{0,61}[0-9a-z])?)*\.?$/i,
  'ipv4': (s) => net.isIPv4(s),
  'ipv6': (s) => net.isIPv6(s),
  'uuid': /^(?:urn:uuid:)?[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/i,
};

const ajv = new Ajv2020({allErrors: true, allowUnionTypes: true, strictTuples: false, formats});
const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const out = {};
for (const {name, schema, docs} of input) {
  const validate = ajv.compile(schema);
  const result = {valid: 0, invalid: []};
  for (const doc of docs) {
    let value;
    try {
      value = JSON.parse(doc);
    } catch (e) {
      result.invalid.push({doc, errors: 'JSON.parse: ' + e.message});
      continue;
    }
    if (validate(value)) {
      result.valid++;
    } else {
      result.invalid.push({doc, errors: ajv.errorsText(validate.errors)});
    }
  }
  out[name] = result;
}
process.stdout.write(JSON.stringify(out));
