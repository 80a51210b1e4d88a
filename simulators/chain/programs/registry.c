/* GridTokenX Registry (2XPQmFYM…) — reference implementation of the public interface
 * (idl/registry.json): users, meters, meter readings and settlement of net generation.
 * Divergences from the public program (authenticated update_meter_reading / settle_meter_balance,
 * the added update_meter_status) are listed in simulators/chain/README.md. */
#include "idl_registry.h"

#define REGISTRY_SPACE 64
#define USER_SPACE 166
#define METER_SPACE 144
#define LOCATION_MAX 100
#define METER_ID_MAX 50

GX_ENTRYPOINT(&REGISTRY_PROGRAM_ID, REGISTRY_error_text)

/* MeterAccount fields after the variable-length meter_id, relative to its end. */
#define M_OWNER 0
#define M_TYPE 32
#define M_STATUS 33
#define M_REGISTERED_AT 34
#define M_LAST_READING_AT 42
#define M_TOTAL_GENERATION 50
#define M_TOTAL_CONSUMPTION 58
#define M_SETTLED 66
#define M_CLAIMED_ERC 74
#define M_TAIL 82

typedef struct {
  AccountInfo *ai;
  const u8 *meter_id;
  u32 meter_id_len;
  u8 *f; /* first field after meter_id */
} Meter;

/* UserAccount fields after the variable-length location, relative to its end. */
#define U_STATUS 0
#define U_REGISTERED_AT 1
#define U_METER_COUNT 9
#define U_CREATED_AT 13
#define U_TAIL 21

typedef struct {
  AccountInfo *ai;
  u8 *f; /* first field after location */
} User;

static u64 load_registry(const Context *ctx, AccountInfo *a) {
  return gx_account(a, ctx->program_id, REGISTRY_ACC_REGISTRY, REGISTRY_REGISTRY_MIN_SIZE);
}

static u64 load_meter(const Context *ctx, AccountInfo *a, Meter *m) {
  TRY(gx_account(a, ctx->program_id, REGISTRY_ACC_METER_ACCOUNT, REGISTRY_METER_ACCOUNT_MIN_SIZE));
  Reader r;
  rd_init(&r, a->data + 8, a->data_len - 8);
  m->ai = a;
  m->meter_id = rd_string(&r, &m->meter_id_len);
  const u8 *rest = rd_take(&r, M_TAIL);
  if (r.err) return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  m->f = (u8 *)rest;
  if (m->f[M_TYPE] >= REGISTRY_METER_TYPE_COUNT || m->f[M_STATUS] >= REGISTRY_METER_STATUS_COUNT)
    return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  return 0;
}

static u64 load_user(const Context *ctx, AccountInfo *a, User *u) {
  TRY(gx_account(a, ctx->program_id, REGISTRY_ACC_USER_ACCOUNT, REGISTRY_USER_ACCOUNT_MIN_SIZE));
  Reader r;
  rd_init(&r, a->data + REGISTRY_USER_ACCOUNT_OFF_LOCATION, a->data_len - REGISTRY_USER_ACCOUNT_OFF_LOCATION);
  u32 n;
  rd_string(&r, &n);
  const u8 *rest = rd_take(&r, U_TAIL);
  if (r.err) return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  u->ai = a;
  u->f = (u8 *)rest;
  if (a->data[REGISTRY_USER_ACCOUNT_OFF_USER_TYPE] >= REGISTRY_USER_TYPE_COUNT ||
      u->f[U_STATUS] >= REGISTRY_USER_STATUS_COUNT)
    return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  return 0;
}

static void add_or_panic(u64 *field, u64 v) {
  u64 out;
  if (gx_add_overflows(*field, v, &out)) gx_panic();
  *field = out;
}

static u64 initialize(Context *ctx) {
  if (ctx->ka_num < 3) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *registry = &ctx->ka[0], *authority = &ctx->ka[1];
  TRY(gx_signer(authority));
  TRY(gx_program(&ctx->ka[2], &SYSTEM_PROGRAM_ID));
  Seed seeds[2] = {SEED_LIT("registry")};
  PdaInit init = {ctx->program_id, ctx->program_id, REGISTRY_SPACE, seeds, 1, 0};
  TRY(gx_init_pda(registry, authority, &init));
  i64 now = gx_unix_timestamp();
  u8 *d = registry->data;
  U64_AT(d, 0) = REGISTRY_ACC_REGISTRY;
  pubkey_copy(PUBKEY_AT(d, REGISTRY_REGISTRY_OFF_AUTHORITY), authority->key);
  U64_AT(d, REGISTRY_REGISTRY_OFF_USER_COUNT) = 0;
  U64_AT(d, REGISTRY_REGISTRY_OFF_METER_COUNT) = 0;
  I64_AT(d, REGISTRY_REGISTRY_OFF_CREATED_AT) = now;
  Writer w;
  gx_event_begin(&w, REGISTRY_EV_REGISTRY_INITIALIZED);
  wr_pubkey(&w, authority->key);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

static u64 register_user(Context *ctx, Reader *r) {
  u8 user_type = rd_enum_u8(r, REGISTRY_USER_TYPE_COUNT);
  u32 loc_len;
  const u8 *location = rd_string(r, &loc_len);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 4) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *registry = &ctx->ka[0], *user = &ctx->ka[1], *authority = &ctx->ka[2];
  TRY(load_registry(ctx, registry));
  TRY(gx_signer(authority));
  TRY(gx_program(&ctx->ka[3], &SYSTEM_PROGRAM_ID));
  TRY(gx_writable(registry));
  Seed seeds[3] = {SEED_LIT("user"), SEED_KEY(authority->key)};
  PdaInit init = {ctx->program_id, ctx->program_id, USER_SPACE, seeds, 2, 0};
  TRY(gx_init_pda(user, authority, &init));
  if (loc_len > LOCATION_MAX) return ERR_ACCOUNT_DID_NOT_SERIALIZE;
  i64 now = gx_unix_timestamp();
  Writer w;
  wr_init(&w, user->data, user->data_len);
  wr_u64(&w, REGISTRY_ACC_USER_ACCOUNT);
  wr_pubkey(&w, authority->key);
  wr_u8(&w, user_type);
  wr_string(&w, location, loc_len);
  wr_u8(&w, REGISTRY_USER_STATUS_ACTIVE);
  wr_i64(&w, now);
  wr_u32(&w, 0);
  wr_i64(&w, now);
  if (w.err) return ERR_ACCOUNT_DID_NOT_SERIALIZE;
  add_or_panic(&U64_AT(registry->data, REGISTRY_REGISTRY_OFF_USER_COUNT), 1);
  gx_event_begin(&w, REGISTRY_EV_USER_REGISTERED);
  wr_pubkey(&w, authority->key);
  wr_u8(&w, user_type);
  wr_string(&w, location, loc_len);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

static u64 register_meter(Context *ctx, Reader *r) {
  u32 id_len;
  const u8 *meter_id = rd_string(r, &id_len);
  u8 meter_type = rd_enum_u8(r, REGISTRY_METER_TYPE_COUNT);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 5) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *registry = &ctx->ka[0], *meter = &ctx->ka[2], *authority = &ctx->ka[3];
  User user;
  TRY(load_registry(ctx, registry));
  TRY(load_user(ctx, &ctx->ka[1], &user));
  TRY(gx_signer(authority));
  TRY(gx_program(&ctx->ka[4], &SYSTEM_PROGRAM_ID));
  /* A seed is at most 32 bytes: longer meter IDs cannot have a PDA. */
  if (id_len > 32) return ERR_CONSTRAINT_SEEDS;
  TRY(gx_writable(registry));
  TRY(gx_writable(user.ai));
  if (!pubkey_eq(authority->key, PUBKEY_AT(user.ai->data, REGISTRY_USER_ACCOUNT_OFF_AUTHORITY)))
    return REGISTRY_ERR_UNAUTHORIZED_USER;
  Seed seeds[3] = {SEED_LIT("meter"), SEED_BYTES(meter_id, id_len)};
  PdaInit init = {ctx->program_id, ctx->program_id, METER_SPACE, seeds, 2, 0};
  TRY(gx_init_pda(meter, authority, &init));
  i64 now = gx_unix_timestamp();
  Writer w;
  wr_init(&w, meter->data, meter->data_len);
  wr_u64(&w, REGISTRY_ACC_METER_ACCOUNT);
  wr_string(&w, meter_id, id_len);
  wr_pubkey(&w, authority->key);
  wr_u8(&w, meter_type);
  wr_u8(&w, REGISTRY_METER_STATUS_ACTIVE);
  wr_i64(&w, now);
  for (int i = 0; i < 5; i++) wr_u64(&w, 0); /* last_reading_at, totals, settled, claimed */
  if (w.err) return ERR_ACCOUNT_DID_NOT_SERIALIZE;
  add_or_panic(&U64_AT(registry->data, REGISTRY_REGISTRY_OFF_METER_COUNT), 1);
  u32 count = U32_AT(user.f, U_METER_COUNT);
  if (count == 0xffffffff) gx_panic();
  U32_AT(user.f, U_METER_COUNT) = count + 1;
  gx_event_begin(&w, REGISTRY_EV_METER_REGISTERED);
  wr_string(&w, meter_id, id_len);
  wr_pubkey(&w, authority->key);
  wr_u8(&w, meter_type);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

/* registry (has_one authority @ UnauthorizedAuthority) + one account + authority signer. */
static u64 load_admin(Context *ctx, AccountInfo **registry, AccountInfo **authority) {
  *registry = &ctx->ka[0];
  *authority = &ctx->ka[2];
  TRY(load_registry(ctx, *registry));
  return 0;
}

static u64 check_admin(const AccountInfo *registry, const AccountInfo *authority) {
  TRY(gx_signer(authority));
  if (!pubkey_eq(authority->key, PUBKEY_AT(registry->data, REGISTRY_REGISTRY_OFF_AUTHORITY)))
    return REGISTRY_ERR_UNAUTHORIZED_AUTHORITY;
  return 0;
}

static u64 update_user_status(Context *ctx, Reader *r) {
  u8 status = rd_enum_u8(r, REGISTRY_USER_STATUS_COUNT);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 3) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *registry, *authority;
  User user;
  TRY(load_admin(ctx, &registry, &authority));
  TRY(load_user(ctx, &ctx->ka[1], &user));
  TRY(gx_signer(authority));
  TRY(gx_writable(user.ai));
  TRY(check_admin(registry, authority));
  u8 old = user.f[U_STATUS];
  user.f[U_STATUS] = status;
  Writer w;
  gx_event_begin(&w, REGISTRY_EV_USER_STATUS_UPDATED);
  wr_pubkey(&w, PUBKEY_AT(user.ai->data, REGISTRY_USER_ACCOUNT_OFF_AUTHORITY));
  wr_u8(&w, old);
  wr_u8(&w, status);
  wr_i64(&w, gx_unix_timestamp());
  gx_event_end(&w);
  return 0;
}

static u64 update_meter_status(Context *ctx, Reader *r) {
  u8 status = rd_enum_u8(r, REGISTRY_METER_STATUS_COUNT);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 3) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *registry, *authority;
  Meter m;
  TRY(load_admin(ctx, &registry, &authority));
  TRY(load_meter(ctx, &ctx->ka[1], &m));
  TRY(gx_signer(authority));
  u8 bump;
  Seed seeds[1] = {SEED_LIT("registry")};
  TRY(gx_check_pda(registry, seeds, 1, ctx->program_id, &bump));
  TRY(gx_writable(m.ai));
  TRY(check_admin(registry, authority));
  u8 old = m.f[M_STATUS];
  m.f[M_STATUS] = status;
  Writer w;
  gx_event_begin(&w, REGISTRY_EV_METER_STATUS_UPDATED);
  wr_string(&w, m.meter_id, m.meter_id_len);
  wr_pubkey(&w, PUBKEY_AT(m.f, M_OWNER));
  wr_u8(&w, old);
  wr_u8(&w, status);
  wr_i64(&w, gx_unix_timestamp());
  gx_event_end(&w);
  return 0;
}

/* meter_account (mut) + a signer that must be the meter's owner. */
static u64 load_owned_meter(Context *ctx, Meter *m, AccountInfo **signer) {
  if (ctx->ka_num < 2) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  TRY(load_meter(ctx, &ctx->ka[0], m));
  *signer = &ctx->ka[1];
  TRY(gx_signer(*signer));
  TRY(gx_writable(m->ai));
  if (!pubkey_eq((*signer)->key, PUBKEY_AT(m->f, M_OWNER))) return REGISTRY_ERR_UNAUTHORIZED_USER;
  return 0;
}

static u64 update_meter_reading(Context *ctx, Reader *r) {
  u64 generated = rd_u64(r), consumed = rd_u64(r);
  i64 ts = rd_i64(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  Meter m;
  AccountInfo *signer;
  TRY(load_owned_meter(ctx, &m, &signer));
  I64_AT(m.f, M_LAST_READING_AT) = ts;
  add_or_panic(&U64_AT(m.f, M_TOTAL_GENERATION), generated);
  add_or_panic(&U64_AT(m.f, M_TOTAL_CONSUMPTION), consumed);
  Writer w;
  gx_event_begin(&w, REGISTRY_EV_METER_READING_UPDATED);
  wr_string(&w, m.meter_id, m.meter_id_len);
  wr_pubkey(&w, PUBKEY_AT(m.f, M_OWNER));
  wr_u64(&w, generated);
  wr_u64(&w, consumed);
  wr_i64(&w, ts);
  gx_event_end(&w);
  return 0;
}

static u64 net_generation(const Meter *m) {
  return gx_sat_sub(U64_AT(m->f, M_TOTAL_GENERATION), U64_AT(m->f, M_TOTAL_CONSUMPTION));
}

static u64 is_valid_user(Context *ctx) {
  if (ctx->ka_num < 1) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  User u;
  TRY(load_user(ctx, &ctx->ka[0], &u));
  u8 valid = u.f[U_STATUS] == REGISTRY_USER_STATUS_ACTIVE;
  gx_set_return_data(&valid, 1);
  return 0;
}

static u64 is_valid_meter(Context *ctx) {
  if (ctx->ka_num < 1) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  Meter m;
  TRY(load_meter(ctx, &ctx->ka[0], &m));
  u8 valid = m.f[M_STATUS] == REGISTRY_METER_STATUS_ACTIVE;
  gx_set_return_data(&valid, 1);
  return 0;
}

static u64 get_unsettled_balance(Context *ctx) {
  if (ctx->ka_num < 1) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  Meter m;
  TRY(load_meter(ctx, &ctx->ka[0], &m));
  u64 unsettled = gx_sat_sub(net_generation(&m), U64_AT(m.f, M_SETTLED));
  gx_set_return_data(&unsettled, 8);
  return 0;
}

static u64 settle_meter_balance(Context *ctx) {
  Meter m;
  AccountInfo *signer;
  TRY(load_owned_meter(ctx, &m, &signer));
  if (m.f[M_STATUS] != REGISTRY_METER_STATUS_ACTIVE) return REGISTRY_ERR_INVALID_METER_STATUS;
  u64 net = net_generation(&m);
  u64 amount = gx_sat_sub(net, U64_AT(m.f, M_SETTLED));
  if (amount == 0) return REGISTRY_ERR_NO_UNSETTLED_BALANCE;
  U64_AT(m.f, M_SETTLED) = net;
  Writer w;
  gx_event_begin(&w, REGISTRY_EV_METER_BALANCE_SETTLED);
  wr_string(&w, m.meter_id, m.meter_id_len);
  wr_pubkey(&w, PUBKEY_AT(m.f, M_OWNER));
  wr_u64(&w, amount);
  wr_u64(&w, net);
  wr_i64(&w, gx_unix_timestamp());
  gx_event_end(&w);
  gx_set_return_data(&amount, 8);
  return 0;
}

u64 process(Context *ctx) {
  u64 disc;
  Reader r;
  TRY(gx_instruction(ctx, &disc, &r));
  switch (disc) {
    case REGISTRY_IX_INITIALIZE: return initialize(ctx);
    case REGISTRY_IX_REGISTER_USER: return register_user(ctx, &r);
    case REGISTRY_IX_REGISTER_METER: return register_meter(ctx, &r);
    case REGISTRY_IX_UPDATE_USER_STATUS: return update_user_status(ctx, &r);
    case REGISTRY_IX_UPDATE_METER_STATUS: return update_meter_status(ctx, &r);
    case REGISTRY_IX_UPDATE_METER_READING: return update_meter_reading(ctx, &r);
    case REGISTRY_IX_IS_VALID_USER: return is_valid_user(ctx);
    case REGISTRY_IX_IS_VALID_METER: return is_valid_meter(ctx);
    case REGISTRY_IX_GET_UNSETTLED_BALANCE: return get_unsettled_balance(ctx);
    case REGISTRY_IX_SETTLE_METER_BALANCE: return settle_meter_balance(ctx);
    default: return ERR_INSTRUCTION_FALLBACK_NOT_FOUND;
  }
}
