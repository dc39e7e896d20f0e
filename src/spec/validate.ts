/**
 * Small structural checks for JSON documents. Each names the dotted path of the first field that is
 * wrong. Values are checked in place, not copied, so unknown fields are carried as they are and a
 * 10,000-entry index.json costs a few milliseconds.
 */
export class ShapeError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${path ? `at ${path}: ` : ""}${problem}`);
  }
}

export type JsonObject = Record<string, unknown>;

const join = (path: string, key: string | number) => (path ? `${path}.${key}` : String(key));

export function object(value: unknown, path: string): JsonObject {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ShapeError(path, "expected an object");
  }
  return value as JsonObject;
}

export function string(parent: JsonObject, key: string, path: string): string {
  const value = parent[key];
  if (typeof value !== "string") throw new ShapeError(join(path, key), "expected a string");
  return value;
}

export function optionalString(parent: JsonObject, key: string, path: string): void {
  if (parent[key] !== undefined) string(parent, key, path);
}

/** Docker writes `null` for empty lists and maps; accept it where Docker does. */
export function optionalStringArray(parent: JsonObject, key: string, path: string, nullable = false): void {
  const value = parent[key];
  if (value === undefined || (nullable && value === null)) return;
  if (!Array.isArray(value)) throw new ShapeError(join(path, key), "expected an array of strings");
  value.forEach((item, index) => {
    if (typeof item !== "string") throw new ShapeError(join(join(path, key), index), "expected a string");
  });
}

export function optionalRecord(
  parent: JsonObject,
  key: string,
  path: string,
  options: { nullable?: boolean; stringValues?: boolean } = {},
): void {
  const value = parent[key];
  if (value === undefined || (options.nullable && value === null)) return;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ShapeError(join(path, key), "expected an object");
  }
  if (!options.stringValues) return;
  for (const name in value) {
    if (typeof (value as JsonObject)[name] !== "string") {
      throw new ShapeError(join(join(path, key), name), "expected a string");
    }
  }
}

export function array(parent: JsonObject, key: string, path: string): unknown[] {
  const value = parent[key];
  if (!Array.isArray(value)) throw new ShapeError(join(path, key), "expected an array");
  return value;
}

export function elementPath(path: string, key: string, index: number): string {
  return join(join(path, key), index);
}
