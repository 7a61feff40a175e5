/**
 * `NODE_DEBUG=wayfind` output for the Consul provider. Never pass a token or request headers here.
 */
import { debuglog } from 'node:util'

export const debug = debuglog('wayfind')
