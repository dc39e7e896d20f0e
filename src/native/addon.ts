/**
 * Loads roci's own Node-API addons (native/*.c, compiled from source by `npm ci`). They are
 * optional: a machine that could not build them still runs roci, and callers choose a fallback
 * or say what is missing.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { errnoOf } from "../errors.ts";

export type Loaded<T> = { addon: T } | { error: string };

const loaded = new Map<string, Loaded<unknown>>();

/** `build/Release/<name>.node` at the package root (this module is dist/native/addon.js). */
function addonPath(name: string): string {
  return fileURLToPath(new URL(`../../build/Release/${name}.node`, import.meta.url));
}

export function loadAddon<T>(name: string, isValid: (exports: unknown) => exports is T): Loaded<T> {
  let state = loaded.get(name) as Loaded<T> | undefined;
  if (state === undefined) {
    const path = addonPath(name);
    try {
      const exports: unknown = createRequire(import.meta.url)(path);
      state = isValid(exports) ? { addon: exports } : { error: `${path} does not export what roci expects` };
    } catch (error) {
      state = {
        error: errnoOf(error) === "MODULE_NOT_FOUND" ? `${path} was not built` : (error as Error).message,
      };
    }
    loaded.set(name, state);
  }
  return state;
}
