import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { FastifyError, FastifyReply } from 'fastify';
import { STATUS_CODES } from 'node:http';

const MESSAGES: Record<string, string> = {
  FST_ERR_BAD_URL: 'malformed URL',
  FST_ERR_MAX_PARAM_LENGTH: 'route parameter too long',
};

/**
 * The HTTP adapter every service runs on: Fastify, with its defaults but three.
 *
 * - A route parameter may be as long as a Kubernetes object name (253 characters, e.g. `/secrets/:name`); Fastify's
 *   default is 100.
 * - What Fastify refuses before routing (a malformed escape such as `%zz`, a longer parameter) is answered in Nest's
 *   shape without quoting the URL: Fastify's own answer quotes it, query string included, so a token sent as
 *   `?access_token=…` would come back in the body (`RouteNotFoundFilter` does the same for unknown routes).
 * - A request that reaches the server while it closes (on SIGTERM) is answered as usual, with `Connection: close`,
 *   not with Fastify's 503: its connection was accepted before the listener closed, and no load balancer in front of a
 *   pod sends it elsewhere, so a 503 would be a request lost during a rolling update.
 *
 * Specs of a service's module use it too, to test the server the service runs on: after `app.init()`, await
 * `app.getHttpAdapter().getInstance().ready()`.
 */
export function serviceAdapter(): FastifyAdapter {
  return new FastifyAdapter({
    return503OnClosing: false,
    routerOptions: { maxParamLength: 253 },
    frameworkErrors: (error: FastifyError, _request: unknown, reply: FastifyReply) => {
      const status = error.statusCode ?? 400;
      const reason = STATUS_CODES[status] ?? 'Error';
      void reply.code(status).send({ message: MESSAGES[error.code] ?? reason, error: reason, statusCode: status });
    },
  });
}
