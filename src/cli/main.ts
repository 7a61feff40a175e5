#!/usr/bin/env node
/**
 * The `wayfind` command: watch a service live, resolve it, measure change latency on a
 * registry. See docs/cli.md. Exit codes are in `usage.ts` (`EXIT`).
 */
import { readFileSync } from 'node:fs'
import { isWayfindError } from '../errors.js'
import { BENCH_LATENCY_HELP, benchLatencyCommand } from './bench-latency.js'
import { processIo, type CommandIo } from './io.js'
import { RESOLVE_HELP, resolveCommand } from './resolve.js'
import { EXIT, UsageError, usageErrorFrom } from './usage.js'
import { WATCH_HELP, watchCommand } from './watch.js'

const MAIN_HELP = `Usage: wayfind <command> [options]

Commands:
  watch <service>     live table of a service's instances, updated on every change
  resolve <service>   wait for at least one instance and print them
  bench latency       measure change → event latency on your registry

Registry: --consul URL | --etcd HOSTS, or CONSUL_HTTP_ADDR / ETCDCTL_ENDPOINTS.
Run "wayfind <command> --help" for the options of a command.

Options:
  -h, --help          this help
  -v, --version       print the version

Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 resolve timeout,
130/143 interrupted by SIGINT/SIGTERM (after cleaning up).`

type Command = (argv: readonly string[], io: CommandIo) => Promise<number>

function version(): string {
  // dist/cli/main.js and src/cli/main.ts both sit two levels below package.json.
  try {
    const pkg = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version?: string }
    return pkg.version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

/** Runs the command line; resolves with the exit code. */
export async function main(argv: readonly string[], io: CommandIo): Promise<number> {
  const [name, ...rest] = argv
  let command: Command
  let help: string
  switch (name) {
    case undefined:
      // A usage error, like any other: usage on stderr, exit 2 (stdout stays clean for pipes).
      io.err(`${MAIN_HELP}\n`)
      return EXIT.USAGE
    case '-h':
    case '--help':
    case 'help':
      io.out(`${MAIN_HELP}\n`)
      return EXIT.OK
    case '-v':
    case '--version':
      io.out(`${version()}\n`)
      return EXIT.OK
    case 'watch':
      command = watchCommand
      help = WATCH_HELP
      break
    case 'resolve':
      command = resolveCommand
      help = RESOLVE_HELP
      break
    case 'bench': {
      const [sub, ...args] = rest
      if (sub === 'latency') return run(benchLatencyCommand, args, BENCH_LATENCY_HELP, io)
      if (sub === undefined) {
        io.err(`wayfind: bench needs a benchmark name (known: latency)\n\n${BENCH_LATENCY_HELP}\n`)
        return EXIT.USAGE
      }
      if (sub === '--help' || sub === '-h') {
        io.out(`${BENCH_LATENCY_HELP}\n`)
        return EXIT.OK
      }
      io.err(
        `wayfind: unknown bench ${JSON.stringify(sub)} (known: latency)\n\n${BENCH_LATENCY_HELP}\n`,
      )
      return EXIT.USAGE
    }
    default:
      io.err(`wayfind: unknown command ${JSON.stringify(name)}\n\n${MAIN_HELP}\n`)
      return EXIT.USAGE
  }
  return run(command, rest, help, io)
}

async function run(
  command: Command,
  argv: readonly string[],
  help: string,
  io: CommandIo,
): Promise<number> {
  // wayfind unrefs every timer and waits on unref'd sockets between retries, so that a library
  // never keeps an application alive; a command, though, must live until it is done.
  const keepAlive = setInterval(() => undefined, 1 << 30)
  try {
    return await command(argv, io)
  } catch (thrown) {
    // parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes for unknown or malformed flags;
    // they are reworded, never printed raw.
    const err = usageErrorFrom(thrown)
    if (err instanceof UsageError) {
      io.err(`wayfind: ${err.message}\n\n${help}\n`)
      return EXIT.USAGE
    }
    if (isWayfindError(err)) io.err(`wayfind: ${err.code}: ${err.message}\n`)
    else io.err(`wayfind: ${err instanceof Error ? err.message : String(err)}\n`)
    return EXIT.FAILURE
  } finally {
    clearInterval(keepAlive)
  }
}

const io = processIo()
main(process.argv.slice(2), io).then(
  (code) => {
    io.dispose()
    process.exitCode = code
    // Clients are closed by the commands; exit promptly even if a library left a socket open.
    setTimeout(() => process.exit(code), 2_000).unref()
  },
  (err: unknown) => {
    io.err(`wayfind: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(EXIT.FAILURE)
  },
)
