import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { RESOLVED_OPTIONS, type ResolvedOptions } from '../module/resolved-options';
import type { ResolvedTokenSource } from '../module/resolved-token-sources';
import { KubernetesApiClient } from '../kube/kubernetes-api.client';
import { type ManagedTokenSource, ProjectedTokenFile, type TokenSource, TokenRequestSource } from './token-source';

/**
 * The token sources named in the module options. Every one loads its first token before the app
 * starts listening, so a missing token file stops start-up with a clear message.
 */
@Injectable()
export class TokenSources implements OnModuleInit, OnModuleDestroy {
  private readonly sources = new Map<string, ManagedTokenSource>();

  constructor(
    @Inject(RESOLVED_OPTIONS) options: Pick<ResolvedOptions, 'tokenSources'>,
    private readonly api: KubernetesApiClient,
  ) {
    for (const [name, sourceOptions] of options.tokenSources) {
      this.sources.set(name, this.create(name, sourceOptions));
    }
  }

  /** @throws Error when no source of that name was configured. */
  get(name: string): TokenSource {
    const source = this.sources.get(name);
    if (!source) {
      const known = [...this.sources.keys()].join(', ') || 'none';
      throw new Error(`No token source named '${name}' (configured: ${known})`);
    }
    return source;
  }

  async onModuleInit(): Promise<void> {
    await Promise.all([...this.sources.values()].map((s) => s.start()));
  }

  onModuleDestroy(): void {
    for (const source of this.sources.values()) source.stop();
  }

  private create(name: string, options: ResolvedTokenSource): ManagedTokenSource {
    return options.kind === 'tokenRequest'
      ? new TokenRequestSource(name, options, this.api)
      : new ProjectedTokenFile(name, options);
  }
}
