/** The secret store's answer as the api relays it: status, content type and body. */
export interface SecretStoreAnswer {
  status: number;
  contentType: string;
  body: string;
}

/** The secret store, called as this service over HTTP or gRPC (`SECRET_STORE_TRANSPORT`). */
export abstract class SecretStoreGateway {
  /** The store's greeting (`GET /`, or `SecretStore/Hello`); a failure to get an answer is a 502, 503 or 504. */
  abstract hello(): Promise<SecretStoreAnswer>;
}
