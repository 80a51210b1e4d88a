/* GridTokenX Trading (GZnqNTJs…) — reference implementation of idl/trading.json.
 *
 * Same order book as the public program (Market, Order, TradeRecord layouts and the order PDA
 * ["order", authority, market.active_orders as u64 LE]), with the defects fixed where the interface
 * allows it: match_orders requires the market authority and checks order types and expiry, cancel
 * decrements active_orders, the fee is bounded to 10,000 bps, value math cannot overflow. New:
 * settle_trade moves the matched energy (GRID) from seller to buyer once per TradeRecord.
 * Every divergence is listed in simulators/chain/README.md. */
#include "idl_trading.h"
#include "idl_governance.h"

#define MARKET_SPACE 75
#define ORDER_SPACE 114
#define TRADE_RECORD_SPACE 176
#define SETTLEMENT_SPACE TRADING_TRADE_SETTLEMENT_MIN_SIZE
#define ORDER_LIFETIME_S 86400
#define DEFAULT_FEE_BPS 25
#define MAX_FEE_BPS 10000
/* 1 GRID = 1 kWh with 9 decimals, so one Wh of a trade is 10^6 base units. */
#define BASE_UNITS_PER_WH 1000000UL
#define GRID_DECIMALS 9
/* SPL Token account layout: mint @0, owner @32, amount @64, delegate COption @72 (tag u32 + key). */
#define TOKEN_ACCOUNT_SIZE 165
#define TA_OFF_MINT 0
#define TA_OFF_OWNER 32
#define TA_OFF_DELEGATE_TAG 72
#define TA_OFF_DELEGATE 76

/* The GRID mint: energy_token PDA ["mint"] (DYXurk47…), the `address` of settle_trade's mint. */
static const Pubkey GRID_MINT = {{186, 96, 51, 35, 108, 176, 167, 83, 120, 115, 137, 185, 223, 254, 62,
  179, 197, 16, 56, 213, 151, 237, 160, 10, 251, 17, 172, 231, 36, 71, 190, 228}};

GX_ENTRYPOINT(&TRADING_PROGRAM_ID, TRADING_error_text)

static u64 market_account(const Context *ctx, const AccountInfo *a) {
  return gx_account(a, ctx->program_id, TRADING_ACC_MARKET, TRADING_MARKET_MIN_SIZE);
}

/* Account<Order>: enum bytes must be valid variants (Anchor's borsh would reject them). */
static u64 order_account(const Context *ctx, const AccountInfo *a) {
  TRY(gx_account(a, ctx->program_id, TRADING_ACC_ORDER, TRADING_ORDER_MIN_SIZE));
  if (a->data[TRADING_ORDER_OFF_ORDER_TYPE] >= TRADING_ORDER_TYPE_COUNT ||
      a->data[TRADING_ORDER_OFF_STATUS] >= TRADING_ORDER_STATUS_COUNT)
    return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  return 0;
}

static bool order_open(const u8 *o) {
  u8 s = o[TRADING_ORDER_OFF_STATUS];
  return s == TRADING_ORDER_STATUS_ACTIVE || s == TRADING_ORDER_STATUS_PARTIALLY_FILLED;
}

static u64 initialize(Context *ctx) {
  if (ctx->ka_num < 1) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  TRY(gx_signer(&ctx->ka[0]));
  gx_log("Trading program initialized");
  return 0;
}

static u64 initialize_market(Context *ctx) {
  if (ctx->ka_num < 3) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *market = &ctx->ka[0], *authority = &ctx->ka[1];
  TRY(gx_signer(authority));
  TRY(gx_writable(authority));
  TRY(gx_program(&ctx->ka[2], &SYSTEM_PROGRAM_ID));
  Seed seeds[2] = {SEED_LIT("market")};
  PdaInit init = {ctx->program_id, ctx->program_id, MARKET_SPACE, seeds, 1, 0};
  TRY(gx_init_pda(market, authority, &init));
  i64 now = gx_unix_timestamp();
  u8 *d = market->data;
  U64_AT(d, 0) = TRADING_ACC_MARKET;
  pubkey_copy(PUBKEY_AT(d, TRADING_MARKET_OFF_AUTHORITY), authority->key);
  U64_AT(d, TRADING_MARKET_OFF_ACTIVE_ORDERS) = 0;
  U64_AT(d, TRADING_MARKET_OFF_TOTAL_VOLUME) = 0;
  U64_AT(d, TRADING_MARKET_OFF_TOTAL_TRADES) = 0;
  I64_AT(d, TRADING_MARKET_OFF_CREATED_AT) = now;
  d[TRADING_MARKET_OFF_CLEARING_ENABLED] = 1;
  *(u16 *)(d + TRADING_MARKET_OFF_MARKET_FEE_BPS) = DEFAULT_FEE_BPS;
  Writer w;
  gx_event_begin(&w, TRADING_EV_MARKET_INITIALIZED);
  wr_pubkey(&w, authority->key);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

/* The optional governance ErcCertificate of create_sell_order: present unless the slot holds the
 * trading program ID. Checks as Account<ErcCertificate> (owner, discriminator, borsh) and then the
 * public program's rules: Valid, unexpired, validated for trading, covering the order amount. */
static u64 check_erc(const Context *ctx, const AccountInfo *erc, u64 amount, i64 now) {
  if (pubkey_eq(erc->key, ctx->program_id)) {
    gx_log("Warning: No ERC certificate provided");
    return 0;
  }
  TRY(gx_account(erc, &GOVERNANCE_PROGRAM_ID, GOVERNANCE_ACC_ERC_CERTIFICATE,
                 GOVERNANCE_ERC_CERTIFICATE_MIN_SIZE));
  Reader r;
  u32 n;
  Pubkey issuer;
  rd_init(&r, erc->data + 8, erc->data_len - 8);
  rd_string(&r, &n);            /* certificate_id */
  rd_pubkey(&r, &issuer);       /* authority */
  u64 cert_amount = rd_u64(&r); /* energy_amount */
  rd_string(&r, &n);            /* renewable_source */
  rd_string(&r, &n);            /* validation_data */
  rd_i64(&r);                   /* issued_at */
  bool has_expiry = rd_option(&r);
  i64 expires_at = has_expiry ? rd_i64(&r) : 0;
  u8 status = rd_enum_u8(&r, GOVERNANCE_ERC_STATUS_COUNT);
  bool validated = rd_bool(&r);
  if (rd_option(&r)) rd_i64(&r); /* trading_validated_at */
  if (r.err) return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  if (status != GOVERNANCE_ERC_STATUS_VALID) return TRADING_ERR_INVALID_ERC_CERTIFICATE;
  if (has_expiry && now >= expires_at) return TRADING_ERR_ERC_CERTIFICATE_EXPIRED;
  if (!validated) return TRADING_ERR_ERC_NOT_VALIDATED_FOR_TRADING;
  if (amount > cert_amount) return TRADING_ERR_EXCEEDS_ERC_AMOUNT;
  return 0;
}

/* create_sell_order / create_buy_order: accounts market, order, [erc_certificate], authority,
 * system_program. */
static u64 create_order(Context *ctx, Reader *r, u8 order_type) {
  u64 amount = rd_u64(r), price = rd_u64(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  bool sell = order_type == TRADING_ORDER_TYPE_SELL;
  u64 need = sell ? 5 : 4;
  if (ctx->ka_num < need) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *market = &ctx->ka[0], *order = &ctx->ka[1];
  AccountInfo *authority = &ctx->ka[need - 2], *system = &ctx->ka[need - 1];
  TRY(market_account(ctx, market));
  TRY(gx_writable(market));
  TRY(gx_signer(authority));
  TRY(gx_writable(authority));
  TRY(gx_program(system, &SYSTEM_PROGRAM_ID));
  i64 now = gx_unix_timestamp();
  if (sell) TRY(check_erc(ctx, &ctx->ka[2], amount, now));
  if (amount == 0) return TRADING_ERR_INVALID_AMOUNT;
  if (price == 0) return TRADING_ERR_INVALID_PRICE;
  u64 index = U64_AT(market->data, TRADING_MARKET_OFF_ACTIVE_ORDERS), active;
  if (gx_add_overflows(index, 1, &active)) return TRADING_ERR_MATH_OVERFLOW;
  Seed seeds[4] = {SEED_LIT("order"), SEED_KEY(authority->key), SEED_BYTES(&index, 8)};
  PdaInit init = {ctx->program_id, ctx->program_id, ORDER_SPACE, seeds, 3, 0};
  TRY(gx_init_pda(order, authority, &init));
  u8 *o = order->data;
  U64_AT(o, 0) = TRADING_ACC_ORDER;
  gx_memset(o + TRADING_ORDER_OFF_SELLER, 0, 64);
  pubkey_copy(PUBKEY_AT(o, sell ? TRADING_ORDER_OFF_SELLER : TRADING_ORDER_OFF_BUYER), authority->key);
  U64_AT(o, TRADING_ORDER_OFF_AMOUNT) = amount;
  U64_AT(o, TRADING_ORDER_OFF_FILLED_AMOUNT) = 0;
  U64_AT(o, TRADING_ORDER_OFF_PRICE_PER_KWH) = price;
  o[TRADING_ORDER_OFF_ORDER_TYPE] = order_type;
  o[TRADING_ORDER_OFF_STATUS] = TRADING_ORDER_STATUS_ACTIVE;
  I64_AT(o, TRADING_ORDER_OFF_CREATED_AT) = now;
  I64_AT(o, TRADING_ORDER_OFF_EXPIRES_AT) = now + ORDER_LIFETIME_S;
  U64_AT(market->data, TRADING_MARKET_OFF_ACTIVE_ORDERS) = active;
  Writer w;
  gx_event_begin(&w, sell ? TRADING_EV_SELL_ORDER_CREATED : TRADING_EV_BUY_ORDER_CREATED);
  wr_pubkey(&w, authority->key);
  wr_pubkey(&w, order->key);
  wr_u64(&w, amount);
  wr_u64(&w, price);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

/* An order that completes leaves the active count (the count feeds the order PDA index). */
static void close_if_filled(u8 *o, u8 *m) {
  if (U64_AT(o, TRADING_ORDER_OFF_FILLED_AMOUNT) >= U64_AT(o, TRADING_ORDER_OFF_AMOUNT)) {
    o[TRADING_ORDER_OFF_STATUS] = TRADING_ORDER_STATUS_COMPLETED;
    U64_AT(m, TRADING_MARKET_OFF_ACTIVE_ORDERS) = gx_sat_sub(U64_AT(m, TRADING_MARKET_OFF_ACTIVE_ORDERS), 1);
  } else {
    o[TRADING_ORDER_OFF_STATUS] = TRADING_ORDER_STATUS_PARTIALLY_FILLED;
  }
}

/* Values of one fill: floor midpoint price, amount x price and the fee, all checked. */
typedef struct { u64 fill, price, total_value, fee; } Fill;

static u64 compute_fill(const u8 *buy, const u8 *sell, const u8 *m, u64 requested, Fill *f) {
  u64 bid = U64_AT(buy, TRADING_ORDER_OFF_PRICE_PER_KWH), ask = U64_AT(sell, TRADING_ORDER_OFF_PRICE_PER_KWH);
  u64 buy_left = gx_sat_sub(U64_AT(buy, TRADING_ORDER_OFF_AMOUNT), U64_AT(buy, TRADING_ORDER_OFF_FILLED_AMOUNT));
  u64 sell_left = gx_sat_sub(U64_AT(sell, TRADING_ORDER_OFF_AMOUNT), U64_AT(sell, TRADING_ORDER_OFF_FILLED_AMOUNT));
  f->fill = requested < buy_left ? requested : buy_left;
  if (sell_left < f->fill) f->fill = sell_left;
  if (f->fill == 0) return TRADING_ERR_INVALID_AMOUNT;
  f->price = (bid >> 1) + (ask >> 1) + (bid & ask & 1);
  if (gx_mul_overflows(f->fill, f->price, &f->total_value)) return TRADING_ERR_MATH_OVERFLOW;
  u16 bps = *(const u16 *)(m + TRADING_MARKET_OFF_MARKET_FEE_BPS);
  u128 scaled;
  gx_mul_64x64(f->total_value, bps, &scaled);
  if (!gx_div_128_64(&scaled, MAX_FEE_BPS, &f->fee)) return TRADING_ERR_MATH_OVERFLOW;
  return 0;
}

static u64 match_orders(Context *ctx, Reader *r) {
  u64 requested = rd_u64(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 6) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *market = &ctx->ka[0], *buy_ai = &ctx->ka[1], *sell_ai = &ctx->ka[2];
  AccountInfo *trade = &ctx->ka[3], *authority = &ctx->ka[4];
  TRY(market_account(ctx, market));
  TRY(order_account(ctx, buy_ai));
  TRY(order_account(ctx, sell_ai));
  TRY(gx_signer(authority));
  TRY(gx_program(&ctx->ka[5], &SYSTEM_PROGRAM_ID));
  TRY(gx_writable(market));
  TRY(gx_writable(buy_ai));
  TRY(gx_writable(sell_ai));
  TRY(gx_writable(authority));
  u8 *m = market->data, *buy = buy_ai->data, *sell = sell_ai->data;
  if (!pubkey_eq(authority->key, PUBKEY_AT(m, TRADING_MARKET_OFF_AUTHORITY)))
    return TRADING_ERR_UNAUTHORIZED_AUTHORITY;
  if (requested == 0) return TRADING_ERR_INVALID_AMOUNT;
  if (buy[TRADING_ORDER_OFF_ORDER_TYPE] != TRADING_ORDER_TYPE_BUY ||
      sell[TRADING_ORDER_OFF_ORDER_TYPE] != TRADING_ORDER_TYPE_SELL)
    return TRADING_ERR_INVALID_ORDER_TYPE;
  if (!order_open(buy)) return TRADING_ERR_INACTIVE_BUY_ORDER;
  if (!order_open(sell)) return TRADING_ERR_INACTIVE_SELL_ORDER;
  i64 now = gx_unix_timestamp();
  if (now >= I64_AT(buy, TRADING_ORDER_OFF_EXPIRES_AT) || now >= I64_AT(sell, TRADING_ORDER_OFF_EXPIRES_AT))
    return TRADING_ERR_ORDER_EXPIRED;
  if (U64_AT(buy, TRADING_ORDER_OFF_PRICE_PER_KWH) < U64_AT(sell, TRADING_ORDER_OFF_PRICE_PER_KWH))
    return TRADING_ERR_PRICE_MISMATCH;
  Fill f;
  TRY(compute_fill(buy, sell, m, requested, &f));
  u64 volume, trades;
  if (gx_add_overflows(U64_AT(m, TRADING_MARKET_OFF_TOTAL_VOLUME), f.fill, &volume) ||
      gx_add_overflows(U64_AT(m, TRADING_MARKET_OFF_TOTAL_TRADES), 1, &trades))
    return TRADING_ERR_MATH_OVERFLOW;
  Seed seeds[4] = {SEED_LIT("trade"), SEED_KEY(buy_ai->key), SEED_KEY(sell_ai->key)};
  PdaInit init = {ctx->program_id, ctx->program_id, TRADE_RECORD_SPACE, seeds, 3, 0};
  TRY(gx_init_pda(trade, authority, &init));
  U64_AT(buy, TRADING_ORDER_OFF_FILLED_AMOUNT) += f.fill;
  U64_AT(sell, TRADING_ORDER_OFF_FILLED_AMOUNT) += f.fill;
  close_if_filled(buy, m);
  close_if_filled(sell, m);
  U64_AT(m, TRADING_MARKET_OFF_TOTAL_VOLUME) = volume;
  U64_AT(m, TRADING_MARKET_OFF_TOTAL_TRADES) = trades;
  u8 *t = trade->data;
  U64_AT(t, 0) = TRADING_ACC_TRADE_RECORD;
  pubkey_copy(PUBKEY_AT(t, TRADING_TRADE_RECORD_OFF_SELL_ORDER), sell_ai->key);
  pubkey_copy(PUBKEY_AT(t, TRADING_TRADE_RECORD_OFF_BUY_ORDER), buy_ai->key);
  pubkey_copy(PUBKEY_AT(t, TRADING_TRADE_RECORD_OFF_SELLER), PUBKEY_AT(sell, TRADING_ORDER_OFF_SELLER));
  pubkey_copy(PUBKEY_AT(t, TRADING_TRADE_RECORD_OFF_BUYER), PUBKEY_AT(buy, TRADING_ORDER_OFF_BUYER));
  U64_AT(t, TRADING_TRADE_RECORD_OFF_AMOUNT) = f.fill;
  U64_AT(t, TRADING_TRADE_RECORD_OFF_PRICE_PER_KWH) = f.price;
  U64_AT(t, TRADING_TRADE_RECORD_OFF_TOTAL_VALUE) = f.total_value;
  U64_AT(t, TRADING_TRADE_RECORD_OFF_FEE_AMOUNT) = f.fee;
  I64_AT(t, TRADING_TRADE_RECORD_OFF_EXECUTED_AT) = now;
  Writer w;
  gx_event_begin(&w, TRADING_EV_ORDER_MATCHED);
  wr_pubkey(&w, sell_ai->key);
  wr_pubkey(&w, buy_ai->key);
  wr_pubkey(&w, PUBKEY_AT(sell, TRADING_ORDER_OFF_SELLER));
  wr_pubkey(&w, PUBKEY_AT(buy, TRADING_ORDER_OFF_BUYER));
  wr_u64(&w, f.fill);
  wr_u64(&w, f.price);
  wr_u64(&w, f.total_value);
  wr_u64(&w, f.fee);
  wr_i64(&w, now);
  gx_event_end(&w);
  return 0;
}

static u64 cancel_order(Context *ctx) {
  if (ctx->ka_num < 3) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *market = &ctx->ka[0], *order = &ctx->ka[1], *authority = &ctx->ka[2];
  TRY(market_account(ctx, market));
  TRY(order_account(ctx, order));
  TRY(gx_signer(authority));
  TRY(gx_writable(market));
  TRY(gx_writable(order));
  u8 *o = order->data;
  u64 owner_off = o[TRADING_ORDER_OFF_ORDER_TYPE] == TRADING_ORDER_TYPE_BUY ? TRADING_ORDER_OFF_BUYER
                                                                             : TRADING_ORDER_OFF_SELLER;
  if (!pubkey_eq(authority->key, PUBKEY_AT(o, owner_off))) return TRADING_ERR_UNAUTHORIZED_AUTHORITY;
  if (!order_open(o)) return TRADING_ERR_ORDER_NOT_CANCELLABLE;
  o[TRADING_ORDER_OFF_STATUS] = TRADING_ORDER_STATUS_CANCELLED;
  U64_AT(market->data, TRADING_MARKET_OFF_ACTIVE_ORDERS) =
      gx_sat_sub(U64_AT(market->data, TRADING_MARKET_OFF_ACTIVE_ORDERS), 1);
  Writer w;
  gx_event_begin(&w, TRADING_EV_ORDER_CANCELLED);
  wr_pubkey(&w, order->key);
  wr_pubkey(&w, authority->key);
  wr_i64(&w, gx_unix_timestamp());
  gx_event_end(&w);
  return 0;
}

static u64 update_market_params(Context *ctx, Reader *r) {
  u16 bps = rd_u16(r);
  bool clearing = rd_bool(r);
  if (r->err) return ERR_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (ctx->ka_num < 2) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *market = &ctx->ka[0], *authority = &ctx->ka[1];
  TRY(market_account(ctx, market));
  TRY(gx_signer(authority));
  TRY(gx_writable(market));
  u8 *m = market->data;
  if (!pubkey_eq(authority->key, PUBKEY_AT(m, TRADING_MARKET_OFF_AUTHORITY)))
    return TRADING_ERR_UNAUTHORIZED_AUTHORITY;
  if (bps > MAX_FEE_BPS) return TRADING_ERR_INVALID_FEE;
  *(u16 *)(m + TRADING_MARKET_OFF_MARKET_FEE_BPS) = bps;
  m[TRADING_MARKET_OFF_CLEARING_ENABLED] = clearing;
  Writer w;
  gx_event_begin(&w, TRADING_EV_MARKET_PARAMS_UPDATED);
  wr_pubkey(&w, authority->key);
  wr_u16(&w, bps);
  wr_bool(&w, clearing);
  wr_i64(&w, gx_unix_timestamp());
  gx_event_end(&w);
  return 0;
}

/* A GRID token account (SPL Token, GRID mint) owned by `party`. */
static u64 party_token_account(const AccountInfo *a, const Pubkey *party) {
  TRY(gx_owned_by(a, &TOKEN_PROGRAM_ID));
  if (a->data_len != TOKEN_ACCOUNT_SIZE) return ERR_ACCOUNT_DID_NOT_DESERIALIZE;
  if (!pubkey_eq(PUBKEY_AT(a->data, TA_OFF_MINT), &GRID_MINT) ||
      !pubkey_eq(PUBKEY_AT(a->data, TA_OFF_OWNER), party))
    return TRADING_ERR_INVALID_TOKEN_ACCOUNT;
  return 0;
}

/* settle_trade: trade_record, settlement (init PDA ["settlement", trade_record]), mint, seller and
 * buyer token accounts, authority (seller or the seller account's approved delegate; payer),
 * token_program, system_program. The settlement PDA makes it exactly-once: the marker and the
 * transfer commit together, and any later call finds the marker (6016). */
static u64 settle_trade(Context *ctx) {
  if (ctx->ka_num < 8) return ERR_ACCOUNT_NOT_ENOUGH_KEYS;
  AccountInfo *trade = &ctx->ka[0], *settlement = &ctx->ka[1], *mint = &ctx->ka[2];
  AccountInfo *seller_ta = &ctx->ka[3], *buyer_ta = &ctx->ka[4], *authority = &ctx->ka[5];
  TRY(gx_account(trade, ctx->program_id, TRADING_ACC_TRADE_RECORD, TRADING_TRADE_RECORD_MIN_SIZE));
  TRY(gx_address(mint, &GRID_MINT));
  TRY(gx_writable(seller_ta));
  TRY(gx_writable(buyer_ta));
  TRY(gx_signer(authority));
  TRY(gx_writable(authority));
  TRY(gx_program(&ctx->ka[6], &TOKEN_PROGRAM_ID));
  TRY(gx_program(&ctx->ka[7], &SYSTEM_PROGRAM_ID));
  u8 bump;
  Seed seeds[3] = {SEED_LIT("settlement"), SEED_KEY(trade->key), SEED_BYTES(&bump, 1)};
  TRY(gx_check_pda(settlement, seeds, 2, ctx->program_id, &bump));
  TRY(gx_writable(settlement));
  if (pubkey_eq(settlement->owner, ctx->program_id)) return TRADING_ERR_TRADE_ALREADY_SETTLED;
  const u8 *t = trade->data;
  const Pubkey *seller = PUBKEY_AT(t, TRADING_TRADE_RECORD_OFF_SELLER);
  const Pubkey *buyer = PUBKEY_AT(t, TRADING_TRADE_RECORD_OFF_BUYER);
  TRY(party_token_account(seller_ta, seller));
  TRY(party_token_account(buyer_ta, buyer));
  bool delegate = U32_AT(seller_ta->data, TA_OFF_DELEGATE_TAG) == 1 &&
                  pubkey_eq(authority->key, PUBKEY_AT(seller_ta->data, TA_OFF_DELEGATE));
  if (!pubkey_eq(authority->key, seller) && !delegate) return TRADING_ERR_UNAUTHORIZED_AUTHORITY;
  u64 amount = U64_AT(t, TRADING_TRADE_RECORD_OFF_AMOUNT), tokens;
  if (gx_mul_overflows(amount, BASE_UNITS_PER_WH, &tokens)) return TRADING_ERR_MATH_OVERFLOW;
  SignerSeeds signer = {seeds, 3};
  TRY(gx_create_account(authority, settlement, SETTLEMENT_SPACE, ctx->program_id, &signer));
  CpiCtx cpi = {&TOKEN_PROGRAM_ID, NULL};
  const AccountInfo *const xfer[4] = {seller_ta, mint, buyer_ta, authority};
  TRY(gx_token_transfer_checked(&cpi, xfer, tokens, GRID_DECIMALS));
  i64 now = gx_unix_timestamp();
  u8 *s = settlement->data;
  U64_AT(s, 0) = TRADING_ACC_TRADE_SETTLEMENT;
  pubkey_copy(PUBKEY_AT(s, TRADING_TRADE_SETTLEMENT_OFF_TRADE_RECORD), trade->key);
  pubkey_copy(PUBKEY_AT(s, TRADING_TRADE_SETTLEMENT_OFF_SELLER), seller);
  pubkey_copy(PUBKEY_AT(s, TRADING_TRADE_SETTLEMENT_OFF_BUYER), buyer);
  U64_AT(s, TRADING_TRADE_SETTLEMENT_OFF_AMOUNT) = amount;
  U64_AT(s, TRADING_TRADE_SETTLEMENT_OFF_TOKEN_AMOUNT) = tokens;
  pubkey_copy(PUBKEY_AT(s, TRADING_TRADE_SETTLEMENT_OFF_SETTLED_BY), authority->key);
  I64_AT(s, TRADING_TRADE_SETTLEMENT_OFF_SETTLED_AT) = now;
  Writer w;
  gx_event_begin(&w, TRADING_EV_TRADE_SETTLED);
  wr_pubkey(&w, trade->key);
  wr_pubkey(&w, seller);
  wr_pubkey(&w, buyer);
  wr_u64(&w, amount);
  wr_u64(&w, tokens);
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
    case TRADING_IX_INITIALIZE: return initialize(ctx);
    case TRADING_IX_INITIALIZE_MARKET: return initialize_market(ctx);
    case TRADING_IX_CREATE_SELL_ORDER: return create_order(ctx, &r, TRADING_ORDER_TYPE_SELL);
    case TRADING_IX_CREATE_BUY_ORDER: return create_order(ctx, &r, TRADING_ORDER_TYPE_BUY);
    case TRADING_IX_MATCH_ORDERS: return match_orders(ctx, &r);
    case TRADING_IX_CANCEL_ORDER: return cancel_order(ctx);
    case TRADING_IX_UPDATE_MARKET_PARAMS: return update_market_params(ctx, &r);
    case TRADING_IX_SETTLE_TRADE: return settle_trade(ctx);
    default: return ERR_INSTRUCTION_FALLBACK_NOT_FOUND;
  }
}
