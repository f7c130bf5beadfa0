// Plugin parameters as a typed object: the scenario's `plugin.params` JSON read against a
// scorer's `static Params`, an object of defaults whose values give each field's type, as serde
// reads a struct with `#[serde(default, deny_unknown_fields)]` in the Rust SDK: missing fields
// take their defaults, unknown ones are an error, and each value must have the field's type.
//
//   static Params = { completion_weight: 1.0, view_action: "view", actions: ["view"] };
//
// A number default takes any finite JSON number, a string a string, a boolean a boolean, an
// array an array (of the type of its first default element, if it has one), `null` anything.

/** Invalid `plugin.params`: the host rejects the reference (`configure` fails). */
export class ParamsError extends Error {
  constructor(message) {
    super(message);
    this.name = "ParamsError";
  }
}

/** The params of a scorer that takes none: absent, `null` or `{}`. */
export const NoParams = Object.freeze({});

function typeOf(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

function check(name, value, def) {
  const want = typeOf(def);
  const got = typeOf(value);
  if (want === "null") return value;
  if (want === "number" && got === "number" && Number.isFinite(value)) return value;
  if ((want === "string" || want === "boolean") && got === want) return value;
  if (want === "array" && got === "array") {
    return def.length ? value.map((v, k) => check(`${name}[${k}]`, v, def[0])) : value.slice();
  }
  if (want === "object" && got === "object") return value;
  throw new ParamsError(`invalid type for field \`${name}\`: expected ${want}, got ${JSON.stringify(value)}`);
}

/** Parses `plugin.params` JSON against `defaults` (a scorer's `static Params`); absent (empty)
 * or `null` gives the defaults. Returns a new, frozen object. */
export function parseParams(defaults, paramsJson) {
  const text = (paramsJson ?? "").trim();
  const out = structuredClone(defaults ?? {});
  if (text === "" || text === "null") return Object.freeze(out);
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ParamsError(`invalid plugin params ${text}: ${e.message}`);
  }
  if (typeOf(doc) !== "object") throw new ParamsError(`invalid plugin params ${text}: expected an object`);
  const fields = Object.keys(defaults ?? {});
  for (const [key, value] of Object.entries(doc)) {
    if (!Object.hasOwn(defaults ?? {}, key)) {
      const expected = fields.map((f) => `\`${f}\``).join(", ") || "none";
      throw new ParamsError(`invalid plugin params ${text}: unknown field \`${key}\`, expected ${expected}`);
    }
    try {
      out[key] = check(key, value, defaults[key]);
    } catch (e) {
      throw new ParamsError(`invalid plugin params ${text}: ${e.message}`);
    }
  }
  return Object.freeze(out);
}
