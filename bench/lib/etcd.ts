/**
 * A real etcd for benchmarks (the test support's `EtcdServer`: loopback, free ports, temp data
 * dir). Fails at once with a clear message when the binary is missing, instead of hanging.
 */
import { accessSync, constants } from 'node:fs'
import { ETCD_BIN, EtcdServer } from '../../test/support/etcd.js'

export class EtcdMissingError extends Error {
  constructor() {
    super(`etcd is not installed (${ETCD_BIN} is missing or not executable). Install it with: sh scripts/ensure-etcd.sh (or set WAYFIND_ETCD_BIN)`)
  }
}

export async function startEtcd(): Promise<EtcdServer> {
  try {
    accessSync(ETCD_BIN, constants.X_OK)
  } catch {
    throw new EtcdMissingError()
  }
  return EtcdServer.start()
}

export type { EtcdServer }
