/**
 * `wayfind watch <service>`: a live view of a service's instances.
 * On a TTY the screen is redrawn (ANSI) on each change and every second; otherwise each change
 * is appended as lines (or, with `--json`, as one JSON object per line).
 */
import { parseArgs } from 'node:util'
import { createWayfind } from '../client.js'
import type { ChangeEvent } from '../events.js'
import { REGISTRY_HELP, REGISTRY_OPTIONS, chooseRegistry } from './registry-args.js'
import { changeCounts, changeJson, changeLines, clockTime, instancesTable } from './render.js'
import { EXIT, IDLE_TTL_MS, oneService } from './usage.js'
import type { CommandIo } from './io.js'

export const WATCH_HELP = `Usage: wayfind watch <service> [registry] [--json]

Shows the instances of <service> and updates on every change: what was added (+),
updated (~) or removed (-), and when. On a terminal the table is redrawn in place; when
stdout is not a terminal each change is appended. Stop with Ctrl-C.

Options:
  --json              one JSON object per change: {time, service, added, removed, updated, instances}
  -h, --help          this help

${REGISTRY_HELP}

Exit codes: 0 stopped by Ctrl-C/SIGTERM, 1 runtime failure, 2 usage error.`

const CLEAR = '\x1b[H\x1b[2J'
const HISTORY = 8

export async function watchCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: {
      ...REGISTRY_OPTIONS,
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  })
  if (values.help === true) {
    io.out(`${WATCH_HELP}\n`)
    return EXIT.OK
  }
  const service = oneService(positionals, 'watch')
  const registry = chooseRegistry(values, io.env)
  // The CLI looks at the service all the time: never let the idle TTL stop the watch.
  const wf = createWayfind({ registry: registry.create(), idleTtlMs: IDLE_TTL_MS })
  const tty = io.isTty && !values.json
  const history: string[] = []
  let lastChange: Date | undefined
  let errorLine = ''
  let marks = new Map<string, string>()

  const draw = (): void => {
    const instances = wf.instances(service)
    const header = `wayfind watch ${service}  (${registry.where})  ${instances.length} instance(s)`
    const since =
      lastChange === undefined ? 'no change yet' : `last change ${clockTime(lastChange)}`
    // In-flight counts come from this client's dispatcher: zero unless this process sends
    // traffic (the same view is what an embedding application would show).
    const inflight = new Map(wf.stats(service).instances.map((i) => [i.key, i.inflight] as const))
    const body =
      instances.length === 0
        ? '(no instances)'
        : instancesTable(instances, { marks, inflight: (i) => inflight.get(i.key) })
    io.out(
      `${CLEAR}${header}\n${since}${errorLine === '' ? '' : `\n! ${errorLine}`}\n\n${body}\n\nChanges:\n${history.join('\n')}\n`,
    )
  }

  const onChange = (e: ChangeEvent): void => {
    if (e.service !== service) return
    const at = new Date()
    lastChange = at
    errorLine = ''
    if (values.json) {
      io.out(`${changeJson(e, at)}\n`)
      return
    }
    const head = `${clockTime(at)} ${service}: ${e.instances.length} instance(s) (${changeCounts(e)})`
    if (tty) {
      marks = new Map([
        ...e.added.map((i) => [i.key, '+'] as const),
        ...e.updated.map((i) => [i.key, '~'] as const),
      ])
      history.unshift(head, ...changeLines(e))
      history.splice(HISTORY * 3)
      draw()
    } else io.out(`${[head, ...changeLines(e)].join('\n')}\n`)
  }

  wf.events.on('change', onChange)
  wf.events.on('error', (e) => {
    if (e.service !== undefined && e.service !== service) return
    errorLine = `${clockTime(new Date())} ${e.error.code}: ${e.error.message}`
    if (tty) draw()
    else io.err(`${errorLine}\n`)
  })

  if (!values.json) {
    if (tty) draw()
    else io.out(`watching ${service} on ${registry.where}\n`)
  }
  wf.instances(service)
  // Refresh the view (relative times, in-flight counts) and keep the service in use.
  const refresh = setInterval(() => {
    wf.instances(service)
    if (tty) draw()
  }, 1_000)
  try {
    // Ctrl-C is how a watch ends: not a failure.
    await io.untilSignal()
    return EXIT.OK
  } finally {
    clearInterval(refresh)
    await wf.close()
  }
}
