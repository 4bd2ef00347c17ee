#!/usr/bin/env python3
"""Checks a JSON file against a JSON Schema (the subset the schemas in tests/data/schema use:
type, properties, required, additionalProperties, items, minItems, $ref to #/$defs, anyOf,
enum, const, minimum, maximum). No packages needed.

usage: json_schema_check.py SCHEMA.json FILE.json [--strict]
  --strict  objects with "properties" accept no other keys (catches a misspelt field)
Exit 0 when the file conforms; 1 with the first errors (JSON path, expected, found) otherwise.
"""
import json
import sys

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def check(schema, value, root, path, strict, errors):
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        schema = dict(target, **{k: v for k, v in schema.items() if k != "$ref"})
    if "anyOf" in schema:
        for alt in schema["anyOf"]:
            sub = []
            check(alt, value, root, path, strict, sub)
            if not sub:
                break
        else:
            errors.append("%s: matches none of anyOf %s, found %r" % (path, schema["anyOf"], value))
            return
    t = schema.get("type")
    if t is not None:
        ts = t if isinstance(t, list) else [t]
        if not any(TYPES[x](value) for x in ts):
            errors.append("%s: expected %s, found %s" % (path, "|".join(ts), json.dumps(value)[:60]))
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append("%s: expected one of %s, found %r" % (path, schema["enum"], value))
    if "const" in schema and value != schema["const"]:
        errors.append("%s: expected %r, found %r" % (path, schema["const"], value))
    if "minimum" in schema and TYPES["number"](value) and value < schema["minimum"]:
        errors.append("%s: expected >= %s, found %s" % (path, schema["minimum"], value))
    if "maximum" in schema and TYPES["number"](value) and value > schema["maximum"]:
        errors.append("%s: expected <= %s, found %s" % (path, schema["maximum"], value))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in value:
                errors.append("%s: required field '%s' is missing" % (path, k))
        for k, v in value.items():
            if k in props:
                check(props[k], v, root, "%s.%s" % (path, k), strict, errors)
            else:
                extra = schema.get("additionalProperties", not (strict and props))
                if extra is False:
                    errors.append("%s: unexpected field '%s'" % (path, k))
                elif isinstance(extra, dict):
                    check(extra, v, root, "%s.%s" % (path, k), strict, errors)
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append("%s: expected at least %d items, found %d" % (path, schema["minItems"], len(value)))
        if "items" in schema:
            for i, v in enumerate(value):
                check(schema["items"], v, root, "%s[%d]" % (path, i), strict, errors)


def main():
    args = [a for a in sys.argv[1:] if a != "--strict"]
    if len(args) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    schema = json.load(open(args[0]))
    try:
        value = json.load(open(args[1]))
    except ValueError as e:
        print("%s: not JSON: %s" % (args[1], e))
        return 1
    errors = []
    check(schema, value, schema, "$", "--strict" in sys.argv, errors)
    for e in errors[:20]:
        print("%s: %s" % (args[1], e))
    if errors:
        print("%s: %d errors against %s" % (args[1], len(errors), args[0]))
        return 1
    print("%s conforms to %s" % (args[1], args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
