import type { Logger } from '@nestjs/common';
import { hash } from 'node:crypto';

// Control characters (C0, DEL, C1: CR, LF, ESC of ANSI sequences, NEL, CSI), format characters (bidi overrides and
// isolates, zero-width characters, BOM), line and paragraph separators, lone surrogates; and the backslash, so that
// an escape in the output always stands for one made here.
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\\]/u;
const UNSAFE_ALL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\\]/gu;
const SHORT: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\' };

/**
 * `value` as it may go into a log line: characters that could end the line, forge another, steer a terminal or
 * reorder the text are written as JSON-style escapes (`\n`, `\r`, `\u001b`, `\u2028`, `\u202e`), and a value longer
 * than `maxLength` characters is cut there and marked with its full length. No quotes are added. A value that needs
 * neither comes back as given, without a copy. Not a string: its JSON (or its type), escaped alike.
 *
 * Hand-written: jsesc, the usual escaper, either escapes every non-ASCII character or (`minimal`) leaves ESC and C1
 * controls as they are, and it does not truncate.
 */
export function logSafe(value: unknown, maxLength = 100): string {
  const text = typeof value === 'string' ? value : describe(value);
  if (text.length <= maxLength && !UNSAFE.test(text)) return text;
  const kept = text.length > maxLength ? text.slice(0, maxLength) : text;
  const escaped = kept.replace(UNSAFE_ALL, escape);
  return text.length > maxLength ? `${escaped}… (${text.length} characters)` : escaped;
}

/**
 * Whether `logger` writes debug lines now, so that a debug line about a request is built only then: Nest's Logger
 * checks the level after the message is made. Nest's ConsoleLogger says; another logger is assumed to write them.
 */
export function debugEnabled(logger: Logger): boolean {
  // No instance at all: the app was made with `logger: false`, and nothing is written.
  const target = logger.localInstance as { isLevelEnabled?: (level: 'debug') => boolean } | undefined;
  if (!target) return false;
  return typeof target.isLevelEnabled === 'function' ? target.isLevelEnabled('debug') : true;
}

/** A short, stable, non-reversible name for a token, so logs can correlate requests without holding credentials. */
export function tokenFingerprint(token: string): string {
  // One-shot: no Hash stream object per request (this runs on every refusal).
  return hash('sha256', token, 'hex').slice(0, 12);
}

function escape(character: string): string {
  const short = SHORT[character];
  if (short) return short;
  let escaped = '';
  // An astral format character (a tag) is two UTF-16 units: each is written as JSON writes it.
  for (let i = 0; i < character.length; i++) {
    escaped += `\\u${character.charCodeAt(i).toString(16).padStart(4, '0')}`;
  }
  return escaped;
}

function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value) ?? typeof value;
  } catch {
    return typeof value;
  }
}
