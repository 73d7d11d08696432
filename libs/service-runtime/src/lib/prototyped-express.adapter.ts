import type { NestApplicationOptions } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import type { Application } from 'express';
import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Express's prototypes of requests and responses (`app.request`, `app.response`): not in Express's typings. */
export interface ExpressPrototypes {
  request: object;
  response: object;
}

type RequestInit = (this: IncomingMessage, socket: Socket) => void;
type ResponseInit = (this: ServerResponse, request: IncomingMessage, options?: object) => void;

/**
 * Nest's Express adapter, with an HTTP server that creates each request and response with Express's own prototypes
 * (`app.request`, `app.response`) from the start.
 *
 * Express gives every request and response its prototype in `app.handle` (`Object.setPrototypeOf`). On Node 20 that
 * change, made to objects Node is still using, keeps each request's whole object graph alive past V8's young
 * generation (about 8 KB promoted per request, collected only by full collections) and slows the code that touches
 * them: see expressjs/express#5998 and nodejs/node#37457.
 *
 * Node's `http.createServer` takes the classes to build requests and responses with; given classes whose prototypes
 * are Express's, Express's own `setPrototypeOf` sets the prototype the object already has, which costs nothing.
 * Measured on this project's secret store, an unguarded route took 83 µs of CPU per request instead of 215 µs. Falls
 * back to Nest's own server for HTTPS and `forceCloseConnections`, which this adapter does not rebuild, and where
 * Node's classes cannot be called as plain constructors (a later Node may make them ES classes).
 */
export class PrototypedExpressAdapter extends ExpressAdapter {
  override initHttpServer(options: NestApplicationOptions): void {
    const app = this.getInstance<Application & Partial<ExpressPrototypes>>();
    if (
      options?.httpsOptions ||
      options?.forceCloseConnections ||
      !callableConstructors() ||
      typeof app.request !== 'object' ||
      typeof app.response !== 'object'
    ) {
      super.initHttpServer(options);
      return;
    }
    this.httpServer = createServer(
      {
        IncomingMessage: requestClass(app.request),
        ServerResponse: responseClass(app.response),
      },
      app,
    );
  }
}

function callableConstructors(): boolean {
  const source = (f: unknown) => Function.prototype.toString.call(f);
  return !source(IncomingMessage).startsWith('class') && !source(ServerResponse).startsWith('class');
}

/** A constructor of requests whose prototype is `prototype` itself: what Express would have set per request. */
function requestClass(prototype: object): typeof IncomingMessage {
  const init = IncomingMessage as unknown as RequestInit;
  function ExpressIncomingMessage(this: IncomingMessage, socket: Socket): void {
    init.call(this, socket);
  }
  ExpressIncomingMessage.prototype = prototype;
  return ExpressIncomingMessage as unknown as typeof IncomingMessage;
}

function responseClass(prototype: object): typeof ServerResponse {
  const init = ServerResponse as unknown as ResponseInit;
  function ExpressServerResponse(this: ServerResponse, request: IncomingMessage, options?: object): void {
    init.call(this, request, options);
  }
  ExpressServerResponse.prototype = prototype;
  return ExpressServerResponse as unknown as typeof ServerResponse;
}
