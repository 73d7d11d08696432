import { ConsoleLogger, Logger } from '@nestjs/common';
import { debugEnabled, logSafe } from './log-safe';

describe('logSafe', () => {
  it('gives a plain value back as it is (the same string)', () => {
    const name = 'system:serviceaccount:api:api pod=api-0 "quoted" é 日本';
    expect(logSafe(name)).toBe(name);
  });

  it.each([
    [
      'CR and LF',
      'RS256\r\n[Nest] 1  - LOG [ServiceAccountGuard] allowed',
      'RS256\\r\\n[Nest] 1  - LOG [ServiceAccountGuard] allowed',
    ],
    ['a tab', 'a\tb', 'a\\tb'],
    ['an ANSI colour', '\u001b[31mred\u001b[0m', '\\u001b[31mred\\u001b[0m'],
    ['NUL, BEL, backspace, DEL', '\u0000\u0007\b\u007f', '\\u0000\\u0007\\u0008\\u007f'],
    ['C1 controls (NEL, CSI)', 'a\u0085b\u009b2J', 'a\\u0085b\\u009b2J'],
    ['line and paragraph separators', 'a\u2028b\u2029c', 'a\\u2028b\\u2029c'],
    [
      'bidi overrides and isolates',
      '\u202eevil\u202c \u2066x\u2069 \u061c',
      '\\u202eevil\\u202c \\u2066x\\u2069 \\u061c',
    ],
    ['zero-width characters and a BOM', 'a\u200bb\u200dc\ufeff', 'a\\u200bb\\u200dc\\ufeff'],
    ['a lone surrogate', 'a\ud800b', 'a\\ud800b'],
    ['a tag character (astral)', 'a\u{e0041}b', 'a\\udb40\\udc41b'],
    ['a backslash, so that an escape in the output is always one made here', 'a\\nb', 'a\\\\nb'],
  ])('escapes %s', (_what, value, expected) => {
    expect(logSafe(value)).toBe(expected);
  });

  it('keeps letters of every script and astral characters that are not controls', () => {
    expect(logSafe('Ω ж 中 😀')).toBe('Ω ж 中 😀');
  });

  it('cuts a long value at maxLength and says how long it was', () => {
    expect(logSafe('x'.repeat(10_000))).toBe(`${'x'.repeat(100)}… (10000 characters)`);
    expect(logSafe('abcdef', 3)).toBe('abc… (6 characters)');
    expect(logSafe('x'.repeat(100))).toBe('x'.repeat(100));
  });

  it('cuts before it escapes: the output stays bounded', () => {
    const hostile = '\u001b'.repeat(10_000);
    const safe = logSafe(hostile, 10);
    expect(safe).toBe(`${'\\u001b'.repeat(10)}… (10000 characters)`);
  });

  it('writes a value that is not a string as JSON, escaped alike', () => {
    expect(logSafe(256)).toBe('256');
    expect(logSafe(null)).toBe('null');
    expect(logSafe(undefined)).toBe('undefined');
    expect(logSafe(['HS256\r\nforged'])).toBe('["HS256\\\\r\\\\nforged"]');
    expect(logSafe({ a: '\u2028' })).toBe('{"a":"\\u2028"}');
    expect(logSafe(10n)).toBe('bigint');
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(logSafe(cyclic)).toBe('object');
  });

  it('leaves no character that starts a new line or a terminal sequence, whatever the input', () => {
    let all = '';
    for (let code = 0; code < 0x3000; code++) all += String.fromCharCode(code);
    const raw = [...logSafe(all, all.length)].filter((c) => {
      const code = c.charCodeAt(0);
      return (
        code < 0x20 ||
        (code >= 0x7f && code <= 0x9f) ||
        (code >= 0x2028 && code <= 0x202e) ||
        (code >= 0x2066 && code <= 0x2069)
      );
    });
    expect(raw).toEqual([]);
  });
});

describe('debugEnabled', () => {
  afterEach(() => Logger.overrideLogger(new ConsoleLogger()));

  it("follows the levels of Nest's console logger", () => {
    const logger = new Logger('Test');
    Logger.overrideLogger(['log', 'warn', 'error']);
    expect(debugEnabled(new Logger('Test'))).toBe(false);
    Logger.overrideLogger(['debug']);
    expect(debugEnabled(logger)).toBe(true);
  });

  it('says no when the app has no logger at all (logger: false)', () => {
    Logger.overrideLogger(false);
    expect(debugEnabled(new Logger('Test'))).toBe(false);
  });

  it('assumes that another logger writes debug lines', () => {
    Logger.overrideLogger({ log: () => undefined, error: () => undefined, warn: () => undefined });
    expect(debugEnabled(new Logger('Test'))).toBe(true);
  });
});
