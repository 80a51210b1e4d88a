// An independent client against the localnet: @solana/web3.js sends a transfer, confirms it with
// confirmTransaction (signatureSubscribe + block height), and reads the recipient's account.
// Usage: RPC_URL=... WS_URL=... PAYER=<keypair.json> node check.mjs  → one JSON line on stdout.
import { readFileSync } from "node:fs";
import {
  Connection, Keypair, LAMPORTS_PER_SOL, SystemProgram, Transaction,
} from "@solana/web3.js";

const payer = Keypair.fromSecretKey(Uint8Array.from(JSON.parse(readFileSync(process.env.PAYER))));
const connection = new Connection(process.env.RPC_URL, {
  commitment: "confirmed", wsEndpoint: process.env.WS_URL,
});
const recipient = Keypair.generate().publicKey;
const lamports = Math.round(0.25 * LAMPORTS_PER_SOL);

const { blockhash, lastValidBlockHeight } = await connection.getLatestBlockhash("confirmed");
const tx = new Transaction({ feePayer: payer.publicKey, blockhash, lastValidBlockHeight })
  .add(SystemProgram.transfer({ fromPubkey: payer.publicKey, toPubkey: recipient, lamports }));
tx.sign(payer);
const signature = await connection.sendRawTransaction(tx.serialize(), {
  preflightCommitment: "confirmed",
});
const confirmation = await connection.confirmTransaction(
  { signature, blockhash, lastValidBlockHeight }, "confirmed");
const account = await connection.getAccountInfo(recipient, "confirmed");
const version = await connection.getVersion();
console.log(JSON.stringify({
  signature,
  err: confirmation.value.err,
  slot: confirmation.context.slot,
  recipient: recipient.toBase58(),
  lamports: account ? account.lamports : null,
  owner: account ? account.owner.toBase58() : null,
  version: version["solana-core"],
}));
process.exit(0);
