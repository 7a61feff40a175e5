/**
 * Loads etcd's client stack on first use instead of when wayfind is imported.
 *
 * `etcd3` brings `@grpc/grpc-js`, `protobufjs` and `cockatiel` with it: well over a hundred
 * modules, which an application using only Consul or the in-memory registry (and every CLI
 * command that does not talk to etcd) should not have to load. So no file under src/ imports
 * these packages for their values: they import their types only (`import type`, erased at
 * build time, enforced by the lint configuration), and get the values from here.
 *
 * Why `require` and not `await import()`: both packages are CommonJS, so Node loads them with
 * its CommonJS loader either way (the same module instances, the same `require.cache`, hence
 * the same error classes for `instanceof`). A synchronous require keeps `etcd()`'s provider as it
 * is: `watch()` builds the client synchronously and throws what it threw before, and no await is
 * added in front of the first request. The cost moves to the first watch or registration.
 */
import { createRequire } from 'node:module'
import type * as Cockatiel from 'cockatiel'
import type * as Etcd3 from 'etcd3'

const requireFromHere = createRequire(import.meta.url)

let etcd3Module: typeof Etcd3 | undefined
let cockatielModule: typeof Cockatiel | undefined

/** The `etcd3` package (with gRPC and protobufjs), loaded on the first call. */
export function etcd3(): typeof Etcd3 {
  etcd3Module ??= requireFromHere('etcd3') as typeof Etcd3
  return etcd3Module
}

/** The `cockatiel` package (etcd3's fault-handling policies), loaded on the first call. */
export function cockatiel(): typeof Cockatiel {
  cockatielModule ??= requireFromHere('cockatiel') as typeof Cockatiel
  return cockatielModule
}
