/**
 * A real etcd for benchmarks (the test support's `EtcdServer`: loopback, free ports, temp data
 * dir). Fails at once with a clear message when the binary is missing, instead of hanging.
 */
import { accessSync, constants } from 'node:fs'
import { ETCD_BIN, EtcdServer } from '../../test/support/etcd.js'

export class EtcdMissingError extends Error {
  constructor() {
    super(
      `etcd is not installed (${ETCD_BIN} is missing or not executable). Install it with: sh scripts/ensure-etcd.sh (or set WAYFIND_ETCD_BIN)`,
    )
  }
}

const running = new Set<EtcdServer>()

export async function startEtcd(): Promise<EtcdServer> {
  try {
    accessSync(ETCD_BIN, constants.X_OK)
  } catch {
    throw new EtcdMissingError()
  }
  const server = await EtcdServer.start()
  running.add(server)
  const remove = server.remove.bind(server)
  server.remove = async () => {
    running.delete(server)
    await remove()
  }
  return server
}

/**
 * Stops every etcd a benchmark started and has not removed (a benchmark that overran its
 * budget): etcd is not our child's child in a way the OS would reap, so it would outlive us.
 */
export async function removeAllEtcd(): Promise<void> {
  await Promise.allSettled([...running].map((s) => s.remove()))
}

export type { EtcdServer }
