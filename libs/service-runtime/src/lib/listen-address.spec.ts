import { parseListenAddress } from './listen-address';

describe('parseListenAddress', () => {
  it.each([
    [':8080', { host: '0.0.0.0', port: 8080 }],
    ['127.0.0.1:8081', { host: '127.0.0.1', port: 8081 }],
    ['[::1]:9000', { host: '::1', port: 9000 }],
    [':0', { host: '0.0.0.0', port: 0 }],
  ])('reads %s', (value, expected) => {
    expect(parseListenAddress(value)).toEqual(expected);
  });

  it.each(['8080', 'localhost', ':99999', ':80a', '1.2.3.4:8080:1', ''])('refuses %p with a clear message', (value) => {
    expect(() => parseListenAddress(value)).toThrow(/LISTEN_ADDR must look like/);
  });
});
