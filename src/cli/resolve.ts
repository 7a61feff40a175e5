/**
 * `wayfind resolve <service>`: waits until the service has at least one instance, prints them.
 */
import { parseArgs } from 'node:util'
import { createWayfind } from '../client.js'
import { ErrorCode, isWayfindError } from '../errors.js'
import type { CommandIo } from './io.js'
import { REGISTRY_HELP, REGISTRY_OPTIONS, chooseRegistry } from './registry-args.js'
import { instanceJson, instancesTable } from './render.js'
import { EXIT, oneService, parseDurationMs } from './usage.js'

export const RESOLVE_HELP = `Usage: wayfind resolve <service> [registry] [--timeout 10s] [--json]

Waits until <service> has at least one usable instance and prints them. Registry errors
met while waiting are printed on stderr; the wait goes on until the timeout.

Options:
  --timeout DURATION  how long to wait: 500ms, 5s, 1m (default 10s)
  --json              print a JSON array of instances
  -h, --help          this help

${REGISTRY_HELP}

Exit codes: 0 found, 1 runtime failure, 2 usage error, 3 no instance within --timeout,
130/143 interrupted.`

export async function resolveCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: {
      ...REGISTRY_OPTIONS,
      timeout: { type: 'string', default: '10s' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  })
  if (values.help === true) {
    io.out(`${RESOLVE_HELP}\n`)
    return EXIT.OK
  }
  const service = oneService(positionals, 'resolve')
  const timeoutMs = parseDurationMs('timeout', values.timeout)
  const registry = chooseRegistry(values, io.env)
  const wf = createWayfind({ registry: registry.create() })
  // Say why nothing arrives (registry down, malformed entries), once per distinct message.
  const reported = new Set<string>()
  wf.events.on('error', (e) => {
    const line = `${e.error.code}: ${e.error.message}`
    if (reported.has(line)) return
    reported.add(line)
    io.err(`wayfind: ${line}\n`)
  })
  try {
    const instances = await wf.resolve(service, { timeoutMs, signal: io.signal })
    io.out(
      values.json
        ? `${JSON.stringify(instances.map(instanceJson))}\n`
        : `${instancesTable(instances)}\n`,
    )
    return EXIT.OK
  } catch (err) {
    if (io.signal.aborted) return io.signal.reason === 'SIGTERM' ? EXIT.SIGTERM : EXIT.SIGINT
    if (isWayfindError(err) && err.code === ErrorCode.RESOLVE_TIMEOUT) {
      io.err(
        `wayfind: no instance of ${JSON.stringify(service)} on ${registry.where} within ${timeoutMs} ms\n`,
      )
      return EXIT.RESOLVE_TIMEOUT
    }
    throw err
  } finally {
    await wf.close()
  }
}
