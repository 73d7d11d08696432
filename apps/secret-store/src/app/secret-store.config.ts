export interface SecretStoreConfig {
  /**
   * `projected`: callers send a token meant for this service (`audience`). `legacy`: callers send
   * their default service-account token and the store reviews it without an audience, as the seed's
   * first variant did; any holder of such a token could replay it here, so prefer `projected`.
   */
  mode: 'projected' | 'legacy';
  /** This service's audience in `projected` mode. */
  audience: string;
}

export function readSecretStoreConfig(env: NodeJS.ProcessEnv = process.env): SecretStoreConfig {
  const mode = env['AUTH_MODE'] ?? 'projected';
  if (mode !== 'projected' && mode !== 'legacy') {
    throw new Error(`AUTH_MODE must be 'projected' or 'legacy', not '${mode}'`);
  }
  return { mode, audience: env['AUDIENCE'] ?? 'secret-store' };
}
