import { Metadata, status } from '@grpc/grpc-js';
import { ForbiddenException, HttpException, ServiceUnavailableException } from '@nestjs/common';
import type { ExecutionContext } from '@nestjs/common';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host';
import {
  EventPattern,
  GrpcMethod,
  GrpcStreamCall,
  GrpcStreamMethod,
  MessagePattern,
  RpcException,
  Transport,
} from '@nestjs/microservices';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { GRPC_STATUS_OF_HTTP, grpcCall, grpcServerCall, grpcStatusOf } from './grpc-call';
import { guardedCallOf } from './guarded-call';
import { handlerTransport } from './handler-transport';
import { httpCall } from './http-call';

// How a gRPC call is read and answered, and how handlers are told apart, on plain objects: no server.

function rpcContext(args: unknown[]): ExecutionContext {
  const context = new ExecutionContextHost(args);
  context.setType('rpc');
  return context;
}

function unaryCall(message: object, entries: [string, string][] = []) {
  const metadata = new Metadata();
  for (const [key, value] of entries) metadata.add(key, value);
  const call = { metadata, request: message };
  return { call, context: rpcContext([message, metadata, call]) };
}

describe('gRPC statuses of the refusals', () => {
  it('spell each HTTP status as the gRPC status of the same meaning, as grpc-js numbers them', () => {
    expect(GRPC_STATUS_OF_HTTP).toEqual({
      400: status.INVALID_ARGUMENT,
      401: status.UNAUTHENTICATED,
      403: status.PERMISSION_DENIED,
      404: status.NOT_FOUND,
      429: status.RESOURCE_EXHAUSTED,
      500: status.INTERNAL,
      501: status.UNIMPLEMENTED,
      503: status.UNAVAILABLE,
      504: status.DEADLINE_EXCEEDED,
    });
    expect(grpcStatusOf(418)).toBe(status.UNKNOWN);
  });

  it('become an RpcException with the code, the message and the trailers set for the call', () => {
    const { call, context } = unaryCall({});
    grpcCall.setHeader(context, 'Retry-After', '5');
    const thrown = grpcCall.refusal(
      context,
      new ServiceUnavailableException('authentication is unavailable, retry later'),
    );
    expect(thrown).toBeInstanceOf(RpcException);
    const error = (thrown as RpcException).getError() as { code: number; message: string; metadata: Metadata };
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.message).toBe('authentication is unavailable, retry later');
    expect(error.metadata).toBeInstanceOf(Metadata);
    expect(error.metadata.getMap()).toEqual({ 'retry-after': '5' });
    // The trailers go with that refusal only.
    const next = grpcCall.refusal(context, new ForbiddenException('caller not allowed')) as RpcException;
    expect((next.getError() as { metadata: Metadata }).metadata.getMap()).toEqual({});
    expect(call.metadata.getMap()).toEqual({});
  });

  it("keep a subclass's message and status; other errors and RpcExceptions leave as they are", () => {
    const { context } = unaryCall({});
    const custom = grpcCall.refusal(context, new HttpException({ message: 'go away', extra: 1 }, 403)) as RpcException;
    expect(custom.getError()).toMatchObject({ code: status.PERMISSION_DENIED, message: 'go away' });
    const own = new RpcException({ code: status.ABORTED, message: 'own' });
    expect(grpcCall.refusal(context, own)).toBe(own);
    const bug = new TypeError('bug');
    expect(grpcCall.refusal(context, bug)).toBe(bug);
  });
});

describe('a gRPC call as the guard reads it', () => {
  it('holds the token headers of the metadata, repeated values as a list, and the message as placeholders', () => {
    const { context } = unaryCall({ name: 'db' }, [
      ['authorization', 'Bearer a.b.c'],
      ['x-client-id', 'x'],
      ['x-client-id', 'y'],
      ['other', 'z'],
    ]);
    expect(grpcCall.request(context)).toEqual({
      headers: { authorization: 'Bearer a.b.c', 'x-client-id': ['x', 'y'] },
      params: { name: 'db' },
    });
  });

  it('has no placeholders on a request-streaming call, and finds the call of @GrpcStreamCall first', () => {
    const metadata = new Metadata();
    const call = { metadata };
    const context = rpcContext([call]);
    expect(grpcServerCall(context)).toBe(call);
    expect(grpcCall.request(context).params).toBeUndefined();
  });

  it('tells gRPC calls from other transports and from HTTP', () => {
    expect(guardedCallOf(unaryCall({}).context)).toBe(grpcCall);
    expect(guardedCallOf(rpcContext([{ metadata: { get: 'not a function' } }, { getTopic: () => 't' }]))).toBe(
      undefined,
    );
    expect(guardedCallOf(rpcContext([{ value: 1 }, {}]))).toBeUndefined();
    expect(guardedCallOf(new ExecutionContextHost([{}, {}]))).toBe(httpCall);
  });
});

class Handlers {
  @GrpcMethod('Secrets', 'Read')
  read() {
    return {};
  }
  @GrpcStreamMethod('Secrets', 'Upload')
  upload() {
    return {};
  }
  @GrpcStreamCall('Secrets', 'Pipe')
  pipe() {
    return {};
  }
  @MessagePattern({ cmd: 'read' }, Transport.NATS)
  nats() {
    return {};
  }
  @EventPattern('changed')
  event() {
    return {};
  }
  plain() {
    return {};
  }
}

describe('handlerTransport', () => {
  it('reads gRPC methods, their request streaming, and handlers of other transports from the decorators', () => {
    const of = (name: keyof Handlers) => handlerTransport(Handlers.prototype[name]);
    expect(of('read')).toEqual({ kind: 'grpc', service: 'Secrets', rpc: 'Read', requestStream: false });
    expect(of('upload')).toEqual({ kind: 'grpc', service: 'Secrets', rpc: 'Upload', requestStream: true });
    expect(of('pipe')).toEqual({ kind: 'grpc', service: 'Secrets', rpc: 'Pipe', requestStream: true });
    expect(of('nats')).toEqual({ kind: 'other', describe: '@MessagePattern({"cmd":"read"}) on NATS' });
    expect(of('event')).toEqual({ kind: 'other', describe: '@EventPattern("changed") on any transport' });
    expect(of('plain')).toBeUndefined();
  });
});

describe('an HTTP-only app', () => {
  it('loads the library and reads its handlers without @nestjs/microservices or @grpc/grpc-js installed', () => {
    // Nest's core loads @nestjs/microservices itself when it is installed: the child process hides both packages.
    const script = `
      const Module = require('module');
      const resolve = Module._resolveFilename;
      Module._resolveFilename = function (request, ...rest) {
        if (/^(@nestjs\\/microservices|@grpc\\/)/.test(request)) {
          throw Object.assign(new Error('Cannot find module ' + request), { code: 'MODULE_NOT_FOUND' });
        }
        return resolve.call(this, request, ...rest);
      };
      require('reflect-metadata');
      const lib = require('./libs/k8s-auth/src/index.ts');
      const { handlerTransport } = require('./libs/k8s-auth/src/lib/guard/handler-transport.ts');
      class C { m() {} }
      lib.Audience('x')(C.prototype, 'm', Object.getOwnPropertyDescriptor(C.prototype, 'm'));
      console.log(typeof lib.ServiceAccountGuard + ' ' + String(handlerTransport(C.prototype.m)));
    `;
    const output = execFileSync(process.execPath, ['-r', '@swc-node/register', '-e', script], {
      cwd: join(__dirname, '../../../../..'),
      env: { ...process.env, SWC_NODE_PROJECT: 'tsconfig.base.json' },
      encoding: 'utf8',
    });
    expect(output.trim()).toBe('function undefined');
  });
});
