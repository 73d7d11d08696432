import type { TokenSources } from '../lib/outgoing/named-token-sources';
import type { TokenSource } from '../lib/outgoing/token-source';

/**
 * `TokenSources` with fixed tokens, by name, for `overrideProvider(TokenSources).useValue(fakeTokenSources({ ... }))`:
 * an app that calls other services starts with no token file and no API server, and its outgoing requests carry the
 * token given here (`attachServiceAccountToken` works as usual). `get` of a name not given throws, as the real one does.
 */
export function fakeTokenSources(tokens: Record<string, string>): Pick<TokenSources, 'get'> {
  const sources = new Map<string, TokenSource>();
  for (const [name, token] of Object.entries(tokens)) {
    if (typeof token !== 'string' || token === '') {
      throw new Error(`fakeTokenSources: the token of ${JSON.stringify(name)} must be a non-empty string`);
    }
    sources.set(name, { name, token: () => token, expiresAt: undefined, refresh: async () => undefined });
  }
  return {
    get(name: string): TokenSource {
      const source = sources.get(name);
      if (!source) {
        throw new Error(`No token source named '${name}' (configured: ${[...sources.keys()].join(', ') || 'none'})`);
      }
      return source;
    },
  };
}
