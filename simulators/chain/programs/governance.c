/* GridTokenX Governance (4DY97YYB…) — reference implementation of idl/governance.json.
 *
 * Proof-of-authority configuration and ERC certificates, as the public program, with what it
 * cannot do made to work: issue_erc reads the Registry-owned meter (the runtime forbids writing
 * it) and records the certified generation in a governance-owned MeterClaim PDA
 * ["meter_claim", meter_account]; poa_config is writable in issue_erc / validate_erc_for_trading so
 * the statistics persist. Divergences are listed in simulators/chain/README.md. */
#include "idl_governance.h"
#include "idl_registry.h"

#define POA_SPACE 496
#define ERC_SPACE 460
#define CLAIM_SPACE GOVERNANCE_METER_CLAIM_MIN_SIZE
#define MAX_CERTIFICATE_ID 32 /* a PDA seed; the public program advertises 64 */
#define MAX_SOURCE 64
#define MAX_CONTACT 128
/* ErcCertificate bytes besides its three strings once validated (trading_validated_at = Some). */
#define ERC_FIXED_BYTES 88

GX_ENTRYPOINT(&GOVERNANCE_PROGRAM_ID, GOVERNANCE_error_text)

/* PoAConfig decoded from a private copy of the account bytes (strings point into the copy or into
 * instruction data), re-encoded in place by poa_save. */
typedef struct {
  Pubkey authority;
  const u8 *name;
  u32 name_len;
  const u8 *contact;
  u32 contact_len;
  u8 version;
  bool paused;
  bool has_emergency_ts;
  i64 emergency_ts;
  bool has_reason;
  const u8 *reason;
  u32 reason_len;
  bool maintenance;
  bool erc_enabled;
  u64 min_energy;
  u64 max_erc;
  i64 validity;
  bool auto_revoke;
  bool require_oracle;
  bool delegation;
  bool has_oracle;
  Pubkey oracle;
  u8 min_confidence;
  bool allow_transfers;
  u64 issued;
  u64 validated;
  u64 revoked;
  u64 certified;
  i64 created_at;
  i64 last_updated;
  bool has_last_issued;
  i64 last_issued;
} Poa;

typedef struct {
  u8 copy[POA_SPACE];
  Poa p;
  AccountInfo *ai;
} PoaAccount;

static void rd_opt_i64(Reader *r, bool *some, i64 *v) {
  *some = rd_option(r);
  *v = *some ? rd_i64(r) : 0;
}

static u64 poa_decode(PoaAccount *pa) {
  AccountInfo *a = pa->ai;
  u64 n = a->data_len < POA_SPACE ? a->data_len : POA_SPACE;
  gx_memcpy(pa->copy, a->data, n);
  Poa *p = &pa->p;
  Reader r;
  rd_init(&r, pa->copy + 8, n - 8);
  rd_pubkey(&r, &p->authority);
  p->name = rd_string(&r, &p->name_len);
  p->contact = rd_string(&r, &p->contact_len);
  p->version = rd_u8(&r);
  p->paused = rd_bool(&r);
  rd_opt_i64(&r, &p->has_emergency_ts, &p->emergency_ts);
  p->has_reason = rd_option(&r);
  p->reason = p->has_reason ? rd_string(&r, &p->reason_len) : NULL;
  p->maintenance = rd_bool(&r);
  p->erc_enabled = rd_bool(&r);
  p->min_energy = rd_u64(&r);
  p->max_erc = rd_u64(&r);
  p->validity = rd_i64(&r);
  p->auto_revoke = rd_bool(&r);
  p->require_oracle = rd_bool(&r);
  p->delegation = rd_bool(&r);
  p->has_oracle = rd_option(&r);
  if (p->has_oracle) rd_pubkey(&r, &p->oracle);
  p->min_confidence = rd_u8(&r);
  p->allow_transfers = rd_bool(&r);
  p->issued = rd_u64(&r);
  p->validated = rd_u64(&r);
  p->revoked = rd_u64(&r);
  p->certified = rd_u64(&r);
  p->created_at = rd_i64(&r);
  p->last_updated = rd_i64(&r);
  rd_opt_i64(&r, &p->has_last_issued, &p->last_issued);
  return r.err ? ERR_ACCOUNT_DID_NOT_DESERIALIZE : 0;
}

static void wr_opt_i64(Writer *w, bool some, i64 v) {
  wr_option(w, some);
  if (some) wr_i64(w, v);
}

static void poa_encode(Writer *w, const Poa *p) {
  wr_pubkey(w, &p->authority);
  wr_string(w, p->name, p->name_len);
  wr_string(w, p->contact, p->contact_len);
  wr_u8(w, p->version);
  wr_bool(w, p->paused);
  wr_opt_i64(w, p->has_emergency_ts, p->emergency_ts);
  wr_option(w, p->has_reason);
  if (p->has_reason) wr_string(w, p->reason, p->reason_len);
  wr_bool(w, p->maintenance);
  wr_bool(w, p->erc_enabled);
  wr_u64(w, p->min_energy);
  wr_u64(w, p->max_erc);
  wr_i64(w, p->validity);
  wr_bool(w, p->auto_revoke);
  wr_bool(w, p->require_oracle);
  wr_bool(w, p->delegation);
  wr_option(w, p->has_oracle);
  if (p->has_oracle) wr_pubkey(w, &p->oracle);
  wr_u8(w, p->min_confidence);
  wr_bool(w, p->allow_transfers);
  wr_u64(w, p->issued);
  wr_u64(w, p->validated);
  wr_u64(w, p->revoked);
  wr_u64(w, p->certified);
  wr_i64(w, p->created_at);
  wr_i64(w, p->last_updated);
  wr_opt_i64(w, p->has_last_issued, p->last_issued);
}

/* Anchor's exit(): serialize the whole struct back; 3004 when it outgrows the account. */
static u64 poa_save(PoaAccount *pa) {
  Writer w;
  wr_init(&w, pa->ai->data, pa->ai->data_len);
  wr_u64(&w, GOVERNANCE_ACC_PO_A_CONFIG);
  poa_encode(&w, &pa->p);
  return w.err ? ERR_ACCOUNT_DID_NOT_SERIALIZE : 0;
}

/* poa_config as Account<PoAConfig> at PDA ["poa_config"]: owner, discriminator, seeds, decode. */
static u64 poa_load(const Context *ctx, AccountInfo *a, PoaAccount *pa) {
  TRY(gx_account(a, ctx->program_id, GOVERNANCE_ACC_PO_A_CONFIG, GOVERNANCE_PO_A_CONFIG_MIN_SIZE));
  u8 bump;
  Seed seeds[1] = {SEED_LIT("poa_config")};
  TRY(gx_check_pda(a, seeds, 1, ctx->program_id, &bump));
  pa->ai = a;
  return poa_decode(pa);
}

/* has_one = authority @ UnauthorizedAuthority, after the signer check. */
static u64 poa_admin(const Context *ctx, AccountInfo *poa, AccountInfo *authority, PoaAccount *pa) {
  TRY(poa_load(ctx, poa, pa));
  TRY(gx_writable(poa));
  TRY(gx_signer(authority));
  return pubkey_eq(authority->key, &pa->p.authority) ? 0 : GOVERNANCE_ERR_UNAUTHORIZED_AUTHORITY;
}

/* The two-account admin instructions: poa_config (mut, has_one authority), authority (signer). */
static u64 load_admin(Context *ctx, PoaAccount *pa, AccountInfo **authority) {
  if (ctx->ka_num < 2) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  *authority = &ctx->ka[1];
  return poa_admin(ctx, &ctx->ka[0], *authority, pa);
}

static const char DEFAULT_NAME[] = "REC";
static const char DEFAULT_CONTACT[] = "engineering_erc@utcc.ac.th";

static u64 initialize_poa(Context *ctx) {
  if (ctx->ka_num < 3) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *poa = &ctx->ka[0], *authority = &ctx->ka[1];
  TRY(gx_signer(authority));
  TRY(gx_writable(authority));
  TRY(gx_program(&ctx->ka[2], &SYSTEM_PROGRAM_ID));
  Seed seeds[2] = {SEED_LIT("poa_config")};
  PdaInit init = {ctx->program_id, ctx->program_id, POA_SPACE, seeds, 1, 0};
  TRY(gx_init_pda(poa, authority, &init));
  i64 now = gx_unix_timestamp();
  PoaAccount pa;
  gx_memset(&pa.p, 0, sizeof(Poa));
  pa.ai = poa;
  Poa *p = &pa.p;
  pubkey_copy(&p->authority, authority->key);
  p->name = (const u8 *)DEFAULT_NAME;
  p->name_len = sizeof(DEFAULT_NAME) - 1;
  p->contact = (const u8 *)DEFAULT_CONTACT;
  p->contact_len = sizeof(DEFAULT_CONTACT) - 1;
  p->version = 1;
  p->erc_enabled = true;
  p->min_energy = 100;
  p->max_erc = 1000000;
  p->validity = 31536000;
  p->min_confidence = 80;
  p->created_at = now;
  p->last_updated = now;
  TRY(poa_save(&pa));
  Writer w;
  gx_event_begin(&w, GOVERNANCE_EV_PO_A_INITIALIZED);
  wr_pubkey(&w, authority->key);
  wr_string(&w, p->name, p->name_len);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

static void emit_authority_ts(u64 disc, const AccountInfo *authority, i64 now) {
  Writer w;
  gx_event_begin(&w, disc);
  wr_pubkey(&w, authority->key);
  wr_i64(&w, now);
  gx_event_end(&w);
}

static u64 emergency(Context *ctx, bool pause) {
  PoaAccount pa;
  AccountInfo *authority;
  TRY(load_admin(ctx, &pa, &authority));
  Poa *p = &pa.p;
  if (pause && p->paused) return GOVERNANCE_ERR_ALREADY_PAUSED;
  if (!pause && !p->paused) return GOVERNANCE_ERR_NOT_PAUSED;
  i64 now = gx_unix_timestamp();
  p->paused = pause;
  p->has_emergency_ts = pause;
  p->emergency_ts = pause ? now : 0;
  TRY(poa_save(&pa));
  emit_authority_ts(pause ? GOVERNANCE_EV_EMERGENCY_PAUSE_ACTIVATED : GOVERNANCE_EV_EMERGENCY_PAUSE_DEACTIVATED,
                    authority, now);
  return 0;
}

/* update_governance_config (erc_validation_enabled) and set_maintenance_mode share one shape. */
static u64 set_flag(Context *ctx, Reader *r, bool maintenance) {
  bool value = rd_bool(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  PoaAccount pa;
  AccountInfo *authority;
  TRY(load_admin(ctx, &pa, &authority));
  Poa *p = &pa.p;
  bool old = maintenance ? p->maintenance : p->erc_enabled;
  if (maintenance) p->maintenance = value;
  else p->erc_enabled = value;
  i64 now = gx_unix_timestamp();
  p->last_updated = now;
  TRY(poa_save(&pa));
  Writer w;
  gx_event_begin(&w, maintenance ? GOVERNANCE_EV_MAINTENANCE_MODE_UPDATED : GOVERNANCE_EV_GOVERNANCE_CONFIG_UPDATED);
  wr_pubkey(&w, authority->key);
  wr_bool(&w, value);
  if (!maintenance) wr_bool(&w, old);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

static u64 update_erc_limits(Context *ctx, Reader *r) {
  u64 min = rd_u64(r), max = rd_u64(r);
  i64 validity = rd_i64(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  PoaAccount pa;
  AccountInfo *authority;
  TRY(load_admin(ctx, &pa, &authority));
  if (min == 0) return GOVERNANCE_ERR_INVALID_MINIMUM_ENERGY;
  if (max <= min) return GOVERNANCE_ERR_INVALID_MAXIMUM_ENERGY;
  if (validity <= 0) return GOVERNANCE_ERR_INVALID_VALIDITY_PERIOD;
  Poa *p = &pa.p;
  i64 now = gx_unix_timestamp();
  Writer w;
  gx_event_begin(&w, GOVERNANCE_EV_ERC_LIMITS_UPDATED);
  wr_pubkey(&w, authority->key);
  wr_u64(&w, p->min_energy);
  wr_u64(&w, min);
  wr_u64(&w, p->max_erc);
  wr_u64(&w, max);
  wr_i64(&w, p->validity);
  wr_i64(&w, validity);
  wr_i64(&w, now);
  p->min_energy = min;
  p->max_erc = max;
  p->validity = validity;
  p->last_updated = now;
  TRY(poa_save(&pa));
  gx_event_end(&w);
  return 0;
}

static u64 update_authority_info(Context *ctx, Reader *r) {
  u32 len;
  const u8 *contact = rd_string(r, &len);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  PoaAccount pa;
  AccountInfo *authority;
  TRY(load_admin(ctx, &pa, &authority));
  if (len > MAX_CONTACT) return GOVERNANCE_ERR_CONTACT_INFO_TOO_LONG;
  Poa *p = &pa.p;
  i64 now = gx_unix_timestamp();
  Writer w;
  gx_event_begin(&w, GOVERNANCE_EV_AUTHORITY_INFO_UPDATED);
  wr_pubkey(&w, authority->key);
  wr_string(&w, p->contact, p->contact_len);
  wr_string(&w, contact, len);
  wr_i64(&w, now);
  p->contact = contact;
  p->contact_len = len;
  p->last_updated = now;
  TRY(poa_save(&pa));
  gx_event_end(&w);
  return 0;
}

static u64 get_governance_stats(Context *ctx) {
  if (ctx->ka_num < 1) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  PoaAccount pa;
  TRY(poa_load(ctx, &ctx->ka[0], &pa));
  const Poa *p = &pa.p;
  u8 buf[128];
  Writer w;
  wr_init(&w, buf, sizeof(buf));
  wr_u64(&w, p->issued);
  wr_u64(&w, p->validated);
  wr_u64(&w, p->revoked);
  wr_u64(&w, p->certified);
  wr_bool(&w, p->erc_enabled);
  wr_bool(&w, p->paused);
  wr_bool(&w, p->maintenance);
  wr_u64(&w, p->min_energy);
  wr_u64(&w, p->max_erc);
  wr_i64(&w, p->validity);
  wr_bool(&w, p->require_oracle);
  wr_bool(&w, p->allow_transfers);
  wr_bool(&w, p->delegation);
  wr_i64(&w, p->created_at);
  wr_i64(&w, p->last_updated);
  wr_opt_i64(&w, p->has_last_issued, p->last_issued);
  gx_set_return_data(buf, w.pos);
  return 0;
}

/* The Registry's MeterAccount, read only: total generation and the Registry's own claimed field. */
static u64 registry_meter(const AccountInfo *a, u64 *generation, u64 *claimed) {
  TRY(gx_account(a, &REGISTRY_PROGRAM_ID, REGISTRY_ACC_METER_ACCOUNT, REGISTRY_METER_ACCOUNT_MIN_SIZE));
  Reader r;
  u32 n;
  Pubkey owner;
  rd_init(&r, a->data + 8, a->data_len - 8);
  rd_string(&r, &n);
  rd_pubkey(&r, &owner);
  rd_enum_u8(&r, REGISTRY_METER_TYPE_COUNT);
  rd_enum_u8(&r, REGISTRY_METER_STATUS_COUNT);
  rd_i64(&r);
  rd_i64(&r);
  *generation = rd_u64(&r);
  rd_u64(&r);
  rd_u64(&r);
  *claimed = rd_u64(&r);
  return r.err ? ERR_ACCOUNT_DID_NOT_DESERIALIZE : 0;
}

/* MeterClaim PDA ["meter_claim", meter]: created on the meter's first certificate (init_if_needed),
 * otherwise Account<MeterClaim>. Returns the amount already certified. */
static u64 meter_claim(const Context *ctx, AccountInfo *claim, const AccountInfo *meter,
                       const AccountInfo *payer, u64 *claimed) {
  u8 bump;
  Seed seeds[3] = {SEED_LIT("meter_claim"), SEED_KEY(meter->key), SEED_BYTES(&bump, 1)};
  TRY(gx_check_pda(claim, seeds, 2, ctx->program_id, &bump));
  TRY(gx_writable(claim));
  if (pubkey_eq(claim->owner, &SYSTEM_PROGRAM_ID)) {
    SignerSeeds signer = {seeds, 3};
    TRY(gx_create_account(payer, claim, CLAIM_SPACE, ctx->program_id, &signer));
    U64_AT(claim->data, 0) = GOVERNANCE_ACC_METER_CLAIM;
    pubkey_copy(PUBKEY_AT(claim->data, GOVERNANCE_METER_CLAIM_OFF_METER), meter->key);
  }
  TRY(gx_account(claim, ctx->program_id, GOVERNANCE_ACC_METER_CLAIM, GOVERNANCE_METER_CLAIM_MIN_SIZE));
  *claimed = U64_AT(claim->data, GOVERNANCE_METER_CLAIM_OFF_CLAIMED_ERC_GENERATION);
  return 0;
}

/* issue_erc accounts: poa_config, erc_certificate (init PDA ["erc_certificate", id]), meter_account
 * (Registry-owned), authority, system_program, meter_claim. */
static u64 issue_erc(Context *ctx, Reader *r) {
  u32 id_len, src_len, val_len;
  const u8 *id = rd_string(r, &id_len);
  u64 amount = rd_u64(r);
  const u8 *src = rd_string(r, &src_len);
  const u8 *val = rd_string(r, &val_len);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 6) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *poa = &ctx->ka[0], *erc = &ctx->ka[1], *meter = &ctx->ka[2];
  AccountInfo *authority = &ctx->ka[3], *claim = &ctx->ka[5];
  PoaAccount pa;
  TRY(poa_admin(ctx, poa, authority, &pa));
  TRY(gx_writable(authority));
  TRY(gx_program(&ctx->ka[4], &SYSTEM_PROGRAM_ID));
  if (id_len > MAX_CERTIFICATE_ID) return GOVERNANCE_ERR_CERTIFICATE_ID_TOO_LONG;
  u64 generation, registry_claimed, claimed;
  TRY(registry_meter(meter, &generation, &registry_claimed));
  TRY(gx_writable(meter));
  Poa *p = &pa.p;
  if (p->paused || p->maintenance || !p->erc_enabled) return GOVERNANCE_ERR_ERC_VALIDATION_DISABLED;
  if (amount < p->min_energy) return GOVERNANCE_ERR_BELOW_MINIMUM_ENERGY;
  if (amount > p->max_erc) return GOVERNANCE_ERR_EXCEEDS_MAXIMUM_ENERGY;
  if (src_len > MAX_SOURCE) return GOVERNANCE_ERR_SOURCE_NAME_TOO_LONG;
  if (ERC_FIXED_BYTES + (u64)id_len + src_len + val_len > ERC_SPACE) return ERR_ACCOUNT_DID_NOT_SERIALIZE;
  TRY(meter_claim(ctx, claim, meter, authority, &claimed));
  u64 unclaimed = gx_sat_sub(gx_sat_sub(generation, registry_claimed), claimed);
  if (amount > unclaimed) return GOVERNANCE_ERR_INSUFFICIENT_UNCLAIMED_GENERATION;
  if (p->require_oracle && !p->has_oracle) return GOVERNANCE_ERR_ORACLE_VALIDATION_REQUIRED;
  Seed seeds[3] = {SEED_LIT("erc_certificate"), SEED_BYTES(id, id_len)};
  PdaInit init = {ctx->program_id, ctx->program_id, ERC_SPACE, seeds, 2, 0};
  TRY(gx_init_pda(erc, authority, &init));
  i64 now = gx_unix_timestamp();
  i64 max_i64 = (i64)(~0UL >> 1);
  i64 expires = p->validity > max_i64 - now ? max_i64 : now + p->validity;
  Writer w;
  wr_init(&w, erc->data, erc->data_len);
  wr_u64(&w, GOVERNANCE_ACC_ERC_CERTIFICATE);
  wr_string(&w, id, id_len);
  wr_pubkey(&w, authority->key);
  wr_u64(&w, amount);
  wr_string(&w, src, src_len);
  wr_string(&w, val, val_len);
  wr_i64(&w, now);
  wr_opt_i64(&w, true, expires);
  wr_u8(&w, GOVERNANCE_ERC_STATUS_VALID);
  wr_bool(&w, false);
  wr_option(&w, false);
  if (w.err) return ERR_ACCOUNT_DID_NOT_SERIALIZE;
  u8 *c = claim->data;
  U64_AT(c, GOVERNANCE_METER_CLAIM_OFF_CLAIMED_ERC_GENERATION) = claimed + amount;
  U64_AT(c, GOVERNANCE_METER_CLAIM_OFF_CERTIFICATES_ISSUED) += 1;
  I64_AT(c, GOVERNANCE_METER_CLAIM_OFF_LAST_CLAIMED_AT) = now;
  p->issued += 1;
  u64 certified;
  p->certified = gx_add_overflows(p->certified, amount, &certified) ? ~0UL : certified;
  p->last_updated = now;
  p->has_last_issued = true;
  p->last_issued = now;
  TRY(poa_save(&pa));
  gx_event_begin(&w, GOVERNANCE_EV_ERC_ISSUED);
  wr_string(&w, id, id_len);
  wr_pubkey(&w, authority->key);
  wr_u64(&w, amount);
  wr_string(&w, src, src_len);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

/* validate_erc_for_trading accounts: poa_config (mut here), erc_certificate (mut, PDA from its
 * stored id), authority. */
static u64 validate_erc_for_trading(Context *ctx) {
  if (ctx->ka_num < 3) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *poa = &ctx->ka[0], *erc = &ctx->ka[1], *authority = &ctx->ka[2];
  PoaAccount pa;
  TRY(poa_load(ctx, poa, &pa));
  TRY(gx_account(erc, ctx->program_id, GOVERNANCE_ACC_ERC_CERTIFICATE, GOVERNANCE_ERC_CERTIFICATE_MIN_SIZE));
  Reader r;
  u32 id_len, n;
  Pubkey issuer;
  rd_init(&r, erc->data + 8, erc->data_len - 8);
  const u8 *id = rd_string(&r, &id_len);
  rd_pubkey(&r, &issuer);
  rd_u64(&r);
  rd_string(&r, &n);
  rd_string(&r, &n);
  rd_i64(&r);
  bool has_expiry;
  i64 expires_at;
  rd_opt_i64(&r, &has_expiry, &expires_at);
  u8 status = rd_enum_u8(&r, GOVERNANCE_ERC_STATUS_COUNT);
  u64 validated_at = 8 + r.pos;
  bool validated = rd_bool(&r);
  bool has_ts;
  i64 ts;
  rd_opt_i64(&r, &has_ts, &ts);
  if (r.err) return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  if (id_len > MAX_CERTIFICATE_ID) return ERR_CONSTRAINT_SEEDS;
  u8 bump;
  Seed seeds[2] = {SEED_LIT("erc_certificate"), SEED_BYTES(id, id_len)};
  TRY(gx_check_pda(erc, seeds, 2, ctx->program_id, &bump));
  TRY(gx_writable(erc));
  TRY(gx_writable(poa));
  TRY(gx_signer(authority));
  Poa *p = &pa.p;
  if (!pubkey_eq(authority->key, &p->authority)) return GOVERNANCE_ERR_UNAUTHORIZED_AUTHORITY;
  if (p->paused || p->maintenance) return GOVERNANCE_ERR_SYSTEM_PAUSED;
  if (status != GOVERNANCE_ERC_STATUS_VALID) return GOVERNANCE_ERR_INVALID_ERC_STATUS;
  if (validated) return GOVERNANCE_ERR_ALREADY_VALIDATED;
  i64 now = gx_unix_timestamp();
  if (has_expiry && now >= expires_at) return GOVERNANCE_ERR_ERC_EXPIRED;
  Writer w;
  wr_init(&w, erc->data + validated_at, erc->data_len - validated_at);
  wr_bool(&w, true);
  wr_opt_i64(&w, true, now);
  if (w.err) return ERR_ACCOUNT_DID_NOT_SERIALIZE;
  p->validated += 1;
  p->last_updated = now;
  TRY(poa_save(&pa));
  gx_event_begin(&w, GOVERNANCE_EV_ERC_VALIDATED_FOR_TRADING);
  wr_string(&w, id, id_len);
  wr_pubkey(&w, authority->key);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

u64 process(Context *ctx) {
  u64 disc;
  Reader r;
  TRY(gx_instruction(ctx, &disc, &r));
  switch (disc) {
    case GOVERNANCE_IX_INITIALIZE_POA: return initialize_poa(ctx);
    case GOVERNANCE_IX_EMERGENCY_PAUSE: return emergency(ctx, true);
    case GOVERNANCE_IX_EMERGENCY_UNPAUSE: return emergency(ctx, false);
    case GOVERNANCE_IX_ISSUE_ERC: return issue_erc(ctx, &r);
    case GOVERNANCE_IX_VALIDATE_ERC_FOR_TRADING: return validate_erc_for_trading(ctx);
    case GOVERNANCE_IX_UPDATE_GOVERNANCE_CONFIG: return set_flag(ctx, &r, false);
    case GOVERNANCE_IX_SET_MAINTENANCE_MODE: return set_flag(ctx, &r, true);
    case GOVERNANCE_IX_UPDATE_ERC_LIMITS: return update_erc_limits(ctx, &r);
    case GOVERNANCE_IX_UPDATE_AUTHORITY_INFO: return update_authority_info(ctx, &r);
    case GOVERNANCE_IX_GET_GOVERNANCE_STATS: return get_governance_stats(ctx);
    default: return ERR_INSTRUCTION_FALLBACK_NOT_FOUND;
  }
}
