import twilio from "twilio";

type RequestClientOptions = ConstructorParameters<typeof twilio.RequestClient>[0];
type TwilioOptions = NonNullable<Parameters<typeof twilio>[2]>;

export declare function guardBase(guardUrl: string): string;
export declare function gateUri(base: string, uri: string): string;

/** A twilio-node RequestClient that sends every request through the guard's REST egress gate. */
export declare class GuardRequestClient extends twilio.RequestClient {
  readonly guardUrl: string;
  constructor(guardUrl: string, options?: RequestClientOptions);
}

/** twilio(accountSid, secret, options) with its requests going through the guard. */
export declare function guardedTwilio(
  guardUrl: string,
  accountSid: string,
  secret: string,
  options?: Omit<TwilioOptions, "httpClient"> & { httpClientOptions?: RequestClientOptions },
): twilio.Twilio;
