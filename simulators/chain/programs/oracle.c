/* GridTokenX Oracle (DvdtU4qu…) — reference implementation of the public interface (idl/oracle.json).
 * Stores the API gateway allowed to submit readings and emits one event per reading; no per-meter
 * state, exactly like the public program. */
#include "idl_oracle.h"

#define ORACLE_DATA_SPACE 105

GX_ENTRYPOINT(&ORACLE_PROGRAM_ID, ORACLE_error_text)

static u64 oracle_data_account(const Context *ctx, const AccountInfo *a) {
  TRY(gx_account(a, ctx->program_id, ORACLE_ACC_ORACLE_DATA, ORACLE_ORACLE_DATA_MIN_SIZE));
  return a->data[ORACLE_ORACLE_DATA_OFF_ACTIVE] > 1 ? ERR_ACCOUNT_DID_NOT_DESERIALIZE : 0;
}

static u64 initialize(Context *ctx, Reader *r) {
  Pubkey gateway;
  rd_pubkey(r, &gateway);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 3) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *data = &ctx->ka[0], *authority = &ctx->ka[1];
  TRY(gx_signer(authority));
  TRY(gx_program(&ctx->ka[2], &SYSTEM_PROGRAM_ID));
  Seed seeds[2] = {SEED_LIT("oracle_data")};
  PdaInit init = {ctx->program_id, ctx->program_id, ORACLE_DATA_SPACE, seeds, 1, 0};
  TRY(gx_init_pda(data, authority, &init));
  u8 *d = data->data;
  U64_AT(d, 0) = ORACLE_ACC_ORACLE_DATA;
  pubkey_copy(PUBKEY_AT(d, ORACLE_ORACLE_DATA_OFF_AUTHORITY), authority->key);
  pubkey_copy(PUBKEY_AT(d, ORACLE_ORACLE_DATA_OFF_API_GATEWAY), &gateway);
  U64_AT(d, ORACLE_ORACLE_DATA_OFF_TOTAL_READINGS) = 0;
  I64_AT(d, ORACLE_ORACLE_DATA_OFF_LAST_READING_TIMESTAMP) = 0;
  I64_AT(d, ORACLE_ORACLE_DATA_OFF_LAST_CLEARING) = 0;
  d[ORACLE_ORACLE_DATA_OFF_ACTIVE] = 1;
  I64_AT(d, ORACLE_ORACLE_DATA_OFF_CREATED_AT) = gx_unix_timestamp();
  return 0;
}

/* Accounts (oracle_data mut, authority signer) shared by every instruction after initialize. */
static u64 load(Context *ctx, AccountInfo **data, AccountInfo **authority) {
  if (ctx->ka_num < 2) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  *data = &ctx->ka[0];
  *authority = &ctx->ka[1];
  TRY(oracle_data_account(ctx, *data));
  TRY(gx_signer(*authority));
  return gx_writable(*data);
}

/* Gateway-only instructions: the oracle must be active and the signer its API gateway. */
static u64 load_gateway(Context *ctx, AccountInfo **data, AccountInfo **authority) {
  TRY(load(ctx, data, authority));
  u8 *d = (*data)->data;
  if (!d[ORACLE_ORACLE_DATA_OFF_ACTIVE]) return ORACLE_ERR_ORACLE_INACTIVE;
  if (!pubkey_eq((*authority)->key, PUBKEY_AT(d, ORACLE_ORACLE_DATA_OFF_API_GATEWAY)))
    return ORACLE_ERR_UNAUTHORIZED_GATEWAY;
  return 0;
}

/* Admin instructions: has_one = authority @ UnauthorizedAuthority. */
static u64 load_admin(Context *ctx, AccountInfo **data, AccountInfo **authority) {
  TRY(load(ctx, data, authority));
  if (!pubkey_eq((*authority)->key, PUBKEY_AT((*data)->data, ORACLE_ORACLE_DATA_OFF_AUTHORITY)))
    return ORACLE_ERR_UNAUTHORIZED_AUTHORITY;
  return 0;
}

static u64 submit_meter_reading(Context *ctx, Reader *r) {
  u32 id_len;
  const u8 *meter_id = rd_string(r, &id_len);
  u64 produced = rd_u64(r), consumed = rd_u64(r);
  i64 ts = rd_i64(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  AccountInfo *data, *authority;
  TRY(load_gateway(ctx, &data, &authority));
  u64 total;
  if (gx_add_overflows(U64_AT(data->data, ORACLE_ORACLE_DATA_OFF_TOTAL_READINGS), 1, &total)) gx_panic();
  U64_AT(data->data, ORACLE_ORACLE_DATA_OFF_TOTAL_READINGS) = total;
  I64_AT(data->data, ORACLE_ORACLE_DATA_OFF_LAST_READING_TIMESTAMP) = ts;
  Writer w;
  gx_event_begin(&w, ORACLE_EV_METER_READING_SUBMITTED);
  wr_string(&w, meter_id, id_len);
  wr_u64(&w, produced);
  wr_u64(&w, consumed);
  wr_i64(&w, ts);
  wr_pubkey(&w, authority->key);
  gx_event_end(&w);
  return 0;
}

static u64 trigger_market_clearing(Context *ctx) {
  AccountInfo *data, *authority;
  TRY(load_gateway(ctx, &data, &authority));
  i64 now = gx_unix_timestamp();
  I64_AT(data->data, ORACLE_ORACLE_DATA_OFF_LAST_CLEARING) = now;
  Writer w;
  gx_event_begin(&w, ORACLE_EV_MARKET_CLEARING_TRIGGERED);
  wr_pubkey(&w, authority->key);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

static u64 update_oracle_status(Context *ctx, Reader *r) {
  bool active = rd_bool(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  AccountInfo *data, *authority;
  TRY(load_admin(ctx, &data, &authority));
  data->data[ORACLE_ORACLE_DATA_OFF_ACTIVE] = active;
  Writer w;
  gx_event_begin(&w, ORACLE_EV_ORACLE_STATUS_UPDATED);
  wr_pubkey(&w, authority->key);
  wr_bool(&w, active);
  wr_i64(&w, gx_unix_timestamp());
  gx_event_end(&w);
  return 0;
}

static u64 update_api_gateway(Context *ctx, Reader *r) {
  Pubkey gateway;
  rd_pubkey(r, &gateway);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  AccountInfo *data, *authority;
  TRY(load_admin(ctx, &data, &authority));
  Pubkey *slot = PUBKEY_AT(data->data, ORACLE_ORACLE_DATA_OFF_API_GATEWAY);
  Writer w;
  gx_event_begin(&w, ORACLE_EV_API_GATEWAY_UPDATED);
  wr_pubkey(&w, authority->key);
  wr_pubkey(&w, slot);
  wr_pubkey(&w, &gateway);
  wr_i64(&w, gx_unix_timestamp());
  pubkey_copy(slot, &gateway);
  gx_event_end(&w);
  return 0;
}

u64 process(Context *ctx) {
  u64 disc;
  Reader r;
  TRY(gx_instruction(ctx, &disc, &r));
  switch (disc) {
    case ORACLE_IX_INITIALIZE: return initialize(ctx, &r);
    case ORACLE_IX_SUBMIT_METER_READING: return submit_meter_reading(ctx, &r);
    case ORACLE_IX_TRIGGER_MARKET_CLEARING: return trigger_market_clearing(ctx);
    case ORACLE_IX_UPDATE_ORACLE_STATUS: return update_oracle_status(ctx, &r);
    case ORACLE_IX_UPDATE_API_GATEWAY: return update_api_gateway(ctx, &r);
    default: return ERR_INSTRUCTION_FALLBACK_NOT_FOUND;
  }
}
