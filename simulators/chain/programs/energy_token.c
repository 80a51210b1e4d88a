/* GridTokenX Energy Token (94G1r674…) — reference implementation of the public interface
 * (idl/energy_token.json) on the SPL Token program: the PDA mint ["mint"] with the TokenInfo PDA as
 * mint authority, keypair mints created by create_token_mint, 9 decimals.
 * Divergences (mint_grid_tokens working against the real registry with checked accounts, the mint
 * pinned in mint_tokens_direct, no Metaplex metadata) are listed in simulators/chain/README.md. */
#include "idl_energy_token.h"
#include "idl_registry.h"

#define TOKEN_INFO_SPACE 88
#define MINT_SPACE 82
#define TOKEN_ACCOUNT_SPACE 165
#define DECIMALS 9
#define GRID_UNITS_PER_WH 1000000UL

/* SPL Token account / mint layouts. */
#define TA_MINT 0
#define TA_OWNER 32
#define MINT_IS_INITIALIZED 45

/* MeterAccount fields after meter_id (registry layout). */
#define M_OWNER 0
#define M_TAIL 82

GX_ENTRYPOINT(&ENERGY_TOKEN_PROGRAM_ID, ENERGY_TOKEN_error_text)

static u64 load_token_info(const Context *ctx, const AccountInfo *a) {
  return gx_account(a, ctx->program_id, ENERGY_TOKEN_ACC_TOKEN_INFO, ENERGY_TOKEN_TOKEN_INFO_MIN_SIZE);
}

static u64 token_info_pda(const Context *ctx, const AccountInfo *a, u8 *bump) {
  Seed seeds[1] = {SEED_LIT("token_info")};
  return gx_check_pda(a, seeds, 1, ctx->program_id, bump);
}

static bool is_token_program(const Pubkey *k) {
  return pubkey_eq(k, &TOKEN_PROGRAM_ID) || pubkey_eq(k, &TOKEN_2022_PROGRAM_ID);
}

/* Interface<TokenInterface>: SPL Token or Token-2022. */
static u64 token_interface(const AccountInfo *a) {
  if (!is_token_program(a->key)) return ERR_INVALID_PROGRAM_ID;
  return a->executable ? 0 : ERR_INVALID_PROGRAM_EXECUTABLE;
}

/* Account<Mint> / InterfaceAccount<Mint>: owned by a token program, an initialized mint. */
static u64 load_mint(const AccountInfo *a, bool any_token_program) {
  if (pubkey_eq(a->owner, &SYSTEM_PROGRAM_ID) && *a->lamports == 0) return ERR_ACCOUNT_NOT_INITIALIZED;
  if (any_token_program ? !is_token_program(a->owner) : !pubkey_eq(a->owner, &TOKEN_PROGRAM_ID))
    return ERR_ACCOUNT_OWNED_BY_WRONG_PROGRAM;
  if (a->data_len < MINT_SPACE || a->data[MINT_IS_INITIALIZED] != 1) return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  return 0;
}

/* Account<TokenAccount> of the classic SPL Token program. */
static u64 load_token_account(const AccountInfo *a) {
  if (pubkey_eq(a->owner, &SYSTEM_PROGRAM_ID) && *a->lamports == 0) return ERR_ACCOUNT_NOT_INITIALIZED;
  if (!pubkey_eq(a->owner, &TOKEN_PROGRAM_ID)) return ERR_ACCOUNT_OWNED_BY_WRONG_PROGRAM;
  if (a->data_len < TOKEN_ACCOUNT_SPACE) return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  return 0;
}

static void add_or_panic(u64 *field, u64 v) {
  u64 out;
  if (gx_add_overflows(*field, v, &out)) gx_panic();
  *field = out;
}

static u64 initialize(Context *ctx) {
  if (ctx->ka_num < 1) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  TRY(gx_signer(&ctx->ka[0]));
  gx_log("Energy token program initialized");
  return 0;
}

static u64 create_token_mint(Context *ctx, Reader *r) {
  u32 n;
  rd_string(r, &n); /* name */
  rd_string(r, &n); /* symbol */
  rd_string(r, &n); /* uri */
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 9) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *mint = &ctx->ka[0], *payer = &ctx->ka[2], *authority = &ctx->ka[3];
  AccountInfo *token_program = &ctx->ka[5], *metadata_program = &ctx->ka[6];
  TRY(gx_signer(mint));
  TRY(gx_signer(payer));
  TRY(gx_signer(authority));
  TRY(gx_program(&ctx->ka[4], &SYSTEM_PROGRAM_ID));
  TRY(token_interface(token_program));
  TRY(gx_sysvar(&ctx->ka[7], &RENT_SYSVAR_ID));
  TRY(gx_address(&ctx->ka[8], &INSTRUCTIONS_SYSVAR_ID));
  TRY(gx_writable(mint));
  TRY(gx_writable(&ctx->ka[1]));
  TRY(gx_writable(payer));
  TRY(gx_create_account(payer, mint, MINT_SPACE, token_program->key, NULL));
  CpiCtx c = {token_program->key, NULL};
  TRY(gx_token_initialize_mint2(&c, mint, DECIMALS, authority->key, NULL));
  if (metadata_program->executable)
    gx_log("Token metadata is not supported by this deployment; mint created without metadata");
  else
    gx_log("Metadata program not available; mint created without metadata");
  return 0;
}

static u64 mint_to_wallet(Context *ctx, Reader *r) {
  u64 amount = rd_u64(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 8) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *mint = &ctx->ka[0], *dest = &ctx->ka[1], *owner = &ctx->ka[2];
  AccountInfo *authority = &ctx->ka[3], *payer = &ctx->ka[4], *token_program = &ctx->ka[5];
  AccountInfo *ata_program = &ctx->ka[6], *system_program = &ctx->ka[7];
  TRY(load_mint(mint, true));
  TRY(gx_signer(authority));
  TRY(gx_signer(payer));
  TRY(token_interface(token_program));
  TRY(gx_program(ata_program, &ATA_PROGRAM_ID));
  TRY(gx_program(system_program, &SYSTEM_PROGRAM_ID));
  TRY(gx_writable(mint));
  TRY(gx_writable(dest));
  TRY(gx_writable(payer));
  if (!pubkey_eq(mint->owner, token_program->key)) return ERR_ACCOUNT_OWNED_BY_WRONG_PROGRAM;
  Pubkey ata;
  TRY(gx_ata_address(owner->key, token_program->key, mint->key, &ata));
  if (!pubkey_eq(&ata, dest->key)) return ERR_CONSTRAINT_ASSOCIATED;
  if (pubkey_eq(dest->owner, &SYSTEM_PROGRAM_ID)) {
    AccountInfo *accs[6] = {payer, dest, owner, mint, system_program, token_program};
    TRY(gx_ata_create(ata_program, accs));
  } else {
    if (!pubkey_eq(dest->owner, token_program->key)) return ERR_CONSTRAINT_ASSOCIATED_TOKEN_TOKEN_PROGRAM;
    if (dest->data_len < TOKEN_ACCOUNT_SPACE) return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
    if (!pubkey_eq(PUBKEY_AT(dest->data, TA_MINT), mint->key)) return ERR_CONSTRAINT_TOKEN_MINT;
    if (!pubkey_eq(PUBKEY_AT(dest->data, TA_OWNER), owner->key)) return ERR_CONSTRAINT_TOKEN_OWNER;
  }
  CpiCtx c = {token_program->key, NULL};
  TRY(gx_token_mint_to(&c, mint, dest, authority, amount));
  Writer w;
  gx_event_begin(&w, ENERGY_TOKEN_EV_TOKENS_MINTED);
  wr_pubkey(&w, dest->key);
  wr_u64(&w, amount);
  wr_i64(&w, gx_unix_timestamp());
  gx_event_end(&w);
  return 0;
}

static u64 initialize_token(Context *ctx) {
  if (ctx->ka_num < 6) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *info = &ctx->ka[0], *mint = &ctx->ka[1], *authority = &ctx->ka[2];
  TRY(gx_signer(authority));
  TRY(gx_program(&ctx->ka[3], &SYSTEM_PROGRAM_ID));
  TRY(gx_program(&ctx->ka[4], &TOKEN_PROGRAM_ID));
  TRY(gx_sysvar(&ctx->ka[5], &RENT_SYSVAR_ID));
  Seed info_seeds[2] = {SEED_LIT("token_info")}, mint_seeds[2] = {SEED_LIT("mint")};
  PdaInit info_init = {ctx->program_id, ctx->program_id, TOKEN_INFO_SPACE, info_seeds, 1, 0};
  PdaInit mint_init = {ctx->program_id, &TOKEN_PROGRAM_ID, MINT_SPACE, mint_seeds, 1, 0};
  TRY(gx_init_pda(info, authority, &info_init));
  TRY(gx_init_pda(mint, authority, &mint_init));
  CpiCtx c = {&TOKEN_PROGRAM_ID, NULL};
  TRY(gx_token_initialize_mint2(&c, mint, DECIMALS, info->key, NULL));
  u8 *d = info->data;
  U64_AT(d, 0) = ENERGY_TOKEN_ACC_TOKEN_INFO;
  pubkey_copy(PUBKEY_AT(d, ENERGY_TOKEN_TOKEN_INFO_OFF_AUTHORITY), authority->key);
  pubkey_copy(PUBKEY_AT(d, ENERGY_TOKEN_TOKEN_INFO_OFF_MINT), mint->key);
  U64_AT(d, ENERGY_TOKEN_TOKEN_INFO_OFF_TOTAL_SUPPLY) = 0;
  I64_AT(d, ENERGY_TOKEN_TOKEN_INFO_OFF_CREATED_AT) = gx_unix_timestamp();
  return 0;
}

static u64 add_rec_validator(Context *ctx, Reader *r) {
  Pubkey validator;
  rd_pubkey(r, &validator);
  u32 n;
  rd_string(r, &n);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 2) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *info = &ctx->ka[0], *authority = &ctx->ka[1];
  TRY(load_token_info(ctx, info));
  TRY(gx_signer(authority));
  TRY(gx_writable(info));
  if (!pubkey_eq(authority->key, PUBKEY_AT(info->data, ENERGY_TOKEN_TOKEN_INFO_OFF_AUTHORITY)))
    return ENERGY_TOKEN_ERR_UNAUTHORIZED_AUTHORITY;
  gx_log("REC validator added");
  sol_log_pubkey(&validator);
  return 0;
}

static u64 transfer_tokens(Context *ctx, Reader *r) {
  u64 amount = rd_u64(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 4) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *from = &ctx->ka[0], *to = &ctx->ka[1], *authority = &ctx->ka[2];
  TRY(load_token_account(from));
  TRY(load_token_account(to));
  TRY(gx_signer(authority));
  TRY(gx_program(&ctx->ka[3], &TOKEN_PROGRAM_ID));
  TRY(gx_writable(from));
  TRY(gx_writable(to));
  CpiCtx c = {&TOKEN_PROGRAM_ID, NULL};
  return gx_token_transfer(&c, from, to, authority, amount);
}

static u64 burn_tokens(Context *ctx, Reader *r) {
  u64 amount = rd_u64(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 5) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *info = &ctx->ka[0], *mint = &ctx->ka[1], *account = &ctx->ka[2], *authority = &ctx->ka[3];
  TRY(load_token_info(ctx, info));
  TRY(load_mint(mint, false));
  TRY(load_token_account(account));
  TRY(gx_signer(authority));
  TRY(gx_program(&ctx->ka[4], &TOKEN_PROGRAM_ID));
  TRY(gx_writable(info));
  TRY(gx_writable(mint));
  TRY(gx_writable(account));
  CpiCtx c = {&TOKEN_PROGRAM_ID, NULL};
  TRY(gx_token_burn(&c, account, mint, authority, amount));
  u64 *supply = &U64_AT(info->data, ENERGY_TOKEN_TOKEN_INFO_OFF_TOTAL_SUPPLY);
  *supply = gx_sat_sub(*supply, amount);
  return 0;
}

/* Mint `amount` of the PDA mint to `dest`, signed by the TokenInfo PDA; total_supply += amount. */
static u64 mint_from_pda(AccountInfo *info, u8 bump, AccountInfo *mint, AccountInfo *dest, u64 amount) {
  Seed seeds[2] = {SEED_LIT("token_info"), SEED_BYTES(&bump, 1)};
  SignerSeeds signer = {seeds, 2};
  CpiCtx c = {&TOKEN_PROGRAM_ID, &signer};
  TRY(gx_token_mint_to(&c, mint, dest, info, amount));
  add_or_panic(&U64_AT(info->data, ENERGY_TOKEN_TOKEN_INFO_OFF_TOTAL_SUPPLY), amount);
  return 0;
}

/* token_info (PDA) + mint pinned to token_info.mint + destination token account of that mint. */
static u64 check_pda_mint(const Context *ctx, AccountInfo *info, AccountInfo *mint, AccountInfo *dest,
                          u8 *bump) {
  TRY(load_token_info(ctx, info));
  TRY(load_mint(mint, false));
  TRY(load_token_account(dest));
  TRY(token_info_pda(ctx, info, bump));
  TRY(gx_writable(info));
  TRY(gx_writable(mint));
  TRY(gx_writable(dest));
  if (!pubkey_eq(mint->key, PUBKEY_AT(info->data, ENERGY_TOKEN_TOKEN_INFO_OFF_MINT)))
    return ERR_CONSTRAINT_ADDRESS;
  return 0;
}

static u64 mint_tokens_direct(Context *ctx, Reader *r) {
  u64 amount = rd_u64(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 5) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *info = &ctx->ka[0], *mint = &ctx->ka[1], *dest = &ctx->ka[2], *authority = &ctx->ka[3];
  u8 bump;
  TRY(gx_signer(authority));
  TRY(gx_program(&ctx->ka[4], &TOKEN_PROGRAM_ID));
  TRY(check_pda_mint(ctx, info, mint, dest, &bump));
  if (!pubkey_eq(authority->key, PUBKEY_AT(info->data, ENERGY_TOKEN_TOKEN_INFO_OFF_AUTHORITY)))
    return ENERGY_TOKEN_ERR_UNAUTHORIZED_AUTHORITY;
  TRY(mint_from_pda(info, bump, mint, dest, amount));
  Writer w;
  gx_event_begin(&w, ENERGY_TOKEN_EV_TOKENS_MINTED_DIRECT);
  wr_pubkey(&w, dest->key);
  wr_u64(&w, amount);
  wr_i64(&w, gx_unix_timestamp());
  gx_event_end(&w);
  return 0;
}

/* Settle the meter's net generation in the registry (CPI) and mint that amount to the owner. */
static u64 mint_grid_tokens(Context *ctx) {
  if (ctx->ka_num < 8) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *info = &ctx->ka[0], *mint = &ctx->ka[1], *meter = &ctx->ka[2], *dest = &ctx->ka[3];
  AccountInfo *owner = &ctx->ka[4], *registry_program = &ctx->ka[6];
  TRY(gx_account(meter, &REGISTRY_PROGRAM_ID, REGISTRY_ACC_METER_ACCOUNT, REGISTRY_METER_ACCOUNT_MIN_SIZE));
  TRY(gx_signer(owner));
  TRY(gx_program(&ctx->ka[5], &TOKEN_PROGRAM_ID));
  TRY(gx_program(registry_program, &REGISTRY_PROGRAM_ID));
  TRY(gx_program(&ctx->ka[7], &SYSTEM_PROGRAM_ID));
  u8 bump;
  TRY(check_pda_mint(ctx, info, mint, dest, &bump));
  TRY(gx_writable(meter));
  Reader r;
  rd_init(&r, meter->data + 8, meter->data_len - 8);
  u32 n;
  rd_string(&r, &n);
  const u8 *rest = rd_take(&r, M_TAIL);
  if (r.err) return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  if (!pubkey_eq(owner->key, PUBKEY_AT(rest, M_OWNER))) return ENERGY_TOKEN_ERR_INVALID_METER;

  AccountMeta metas[2] = {{meter->key, true, false}, {owner->key, false, true}};
  AccountInfo infos[2] = {*meter, *owner};
  u64 disc = REGISTRY_IX_SETTLE_METER_BALANCE;
  Instruction ix = {&REGISTRY_PROGRAM_ID, metas, 2, (const u8 *)&disc, 8};
  TRY(gx_invoke(&ix, infos, 2, NULL));
  u64 amount = 0;
  Pubkey from;
  if (gx_get_return_data(&amount, 8, &from) != 8 || !pubkey_eq(&from, &REGISTRY_PROGRAM_ID))
    return ENERGY_TOKEN_ERR_INVALID_METER;
  if (amount == 0) return ENERGY_TOKEN_ERR_NO_UNSETTLED_BALANCE;
  /* The registry settles Wh; GRID has 9 decimals and 1 GRID = 1 kWh, so 1 Wh = 10^6 base units
   * (ARCHITECTURE.md units, the same rate trading's settle_trade moves). */
  u64 units;
  if (gx_mul_overflows(amount, GRID_UNITS_PER_WH, &units)) gx_panic();
  TRY(mint_from_pda(info, bump, mint, dest, units));
  Writer w;
  gx_event_begin(&w, ENERGY_TOKEN_EV_GRID_TOKENS_MINTED);
  wr_pubkey(&w, owner->key);
  wr_u64(&w, units);
  wr_i64(&w, gx_unix_timestamp());
  gx_event_end(&w);
  return 0;
}

u64 process(Context *ctx) {
  u64 disc;
  Reader r;
  TRY(gx_instruction(ctx, &disc, &r));
  switch (disc) {
    case ENERGY_TOKEN_IX_INITIALIZE: return initialize(ctx);
    case ENERGY_TOKEN_IX_CREATE_TOKEN_MINT: return create_token_mint(ctx, &r);
    case ENERGY_TOKEN_IX_MINT_TO_WALLET: return mint_to_wallet(ctx, &r);
    case ENERGY_TOKEN_IX_INITIALIZE_TOKEN: return initialize_token(ctx);
    case ENERGY_TOKEN_IX_ADD_REC_VALIDATOR: return add_rec_validator(ctx, &r);
    case ENERGY_TOKEN_IX_TRANSFER_TOKENS: return transfer_tokens(ctx, &r);
    case ENERGY_TOKEN_IX_BURN_TOKENS: return burn_tokens(ctx, &r);
    case ENERGY_TOKEN_IX_MINT_TOKENS_DIRECT: return mint_tokens_direct(ctx, &r);
    case ENERGY_TOKEN_IX_MINT_GRID_TOKENS: return mint_grid_tokens(ctx);
    default: return ERR_INSTRUCTION_FALLBACK_NOT_FOUND;
  }
}
