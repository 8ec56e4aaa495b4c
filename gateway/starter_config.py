"""The commented ``gateway.toml`` that ``gateway init`` writes: every key with its
default, so that an operator reads the options where they set them."""

from gateway.validation.rulesets import CEN_CII_DIR, CEN_CII_XSLT_DIR, CEN_CII_ZIP, CEN_RELEASE, CEN_RELEASE_PAGE

# A CII channel stops until the CEN rule set is registered: say so where `syntax` is chosen.
_CII_RULES = f"""\
#   cii needs the CEN EN 16931 rule set for CII, which no package ships. Once, in this
#   directory: download {CEN_CII_ZIP} from the CEN/TC 434 release {CEN_RELEASE}
#   ({CEN_RELEASE_PAGE}), then
#     unzip {CEN_CII_ZIP} -d {CEN_CII_DIR}    # its xslt/ holds EN16931-CII-validation.xslt
#     gateway --config gateway.toml rules add {CEN_CII_XSLT_DIR}
#   (`config check` says so until it is registered; docs/validation.md)
"""

STARTER_CONFIG = """\
# chorus-gateway configuration. Relative paths are relative to data_dir.
# Check it with:  gateway --config gateway.toml config check

[gateway]
data_dir = "."                 # relative to this file
# database_url = "postgresql+psycopg://gateway@127.0.0.1:5432/gateway"
#                                 default: SQLite in data_dir/gateway.db
log_format = "auto"            # auto (readable on a terminal, JSON otherwise) | json | console
poll_seconds = 5               # pause between passes of `gateway run`

# The built-in Chorus Pro simulator. While enabled it answers, after each sending
# step, every flow deposited in its inbox. Rehearse with it, then point the channel
# at a real partner and set enabled = false.
[sandbox]
enabled = true
dir = "sandbox"
partner_code = "AAA123"
# What it makes of each flow (docs/sandbox.md); defaults shown, but for reject (none):
# scenario = "default"         # default (directory, service code, duplicates) | all-integrated
#                              #   | partial (rejects `reject`) | rejected (whole flow, 93) | silent (no report)
# reject = ["F-2026-000002"]   # scenario "partial": invoice numbers rejected, the others integrated
# reject_code = "SCENARIO"     # code and label of the rejections "partial" and "rejected" make
# reject_label = "..."
# lifecycle = ["01", "03"]     # statuses of each integrated invoice, e.g. ["01", "03", "07", "08", "11"]
# lifecycle_interval_seconds = 0  # status k comes k x this after integration; 0: all at once.
#                              #   Make time pass with: gateway sandbox --advance 2h
# report_format = "cppstatut"  # cppstatut | cdar (CDAR D22B, the reform's lifecycle messages)

# How invoices are validated (docs/validation.md).
[validation]
time_budget_seconds = 60       # per invoice; beyond it the outcome is validation-error
unknown_buyer = "warning"      # warning | error: a buyer SIRET absent from `gateway directory import`
max_invoice_number_length = 20 # Chorus Pro E1

# `gateway serve`, the AS2 endpoint (docs/transport.md, "Limits of gateway serve"); defaults shown:
# [serve]
# max_connections = 16           # at once; the next is answered 503 with Retry-After
# request_deadline_seconds = 60  # the whole request (headers and body) must arrive within this: else 408
# max_header_bytes = 65536       # request line and headers; beyond it, or beyond max_headers lines: 431
# max_headers = 100
# refused_body_keep_bytes = 1048576  # of a refused body (its size and sha256 are always kept)
# shutdown_grace_seconds = 5     # at SIGTERM, for requests already received
# An as2 partner's bodies: [partners.X] as2_max_message_bytes = 20000000 (beyond it: 413)

# A partner is where flows go and reports come back from.
[partners.sandbox]
transport = "local"            # local | sftp | as2, see docs/transport.md
partner_code = "AAA123"        # your Chorus Pro EDI partner code
outbound_dir = "sandbox/inbox"
inbound_dir = "sandbox/outbox"
file_name_template = "{interface}_{partner_code}_{flow_id}.tar.gz"
max_invoices_per_flow = 500    # Chorus Pro: at most 500 invoices per flow
max_flow_bytes = 1000000000    # and 1 GB
max_attempts = 5               # then the flow is failed and an alert is logged
credit_note_as_invoice = false # true is refused: EN 16931 puts a credit note (381) in a CreditNote

# A channel is a directory the ERP drops its exports into.
[channels.erp]
watch_dir = "inbox/erp"
input_format = "csv"           # csv | jsonl | idoc | path/to/your.xsl, see docs/inputs.md
syntax = "ubl"                 # ubl (UBL 2.1, FSO1100A) | cii (CII D16B, FSO1106A)
""" + _CII_RULES + """\
partner = "sandbox"
settle_seconds = 2             # leave files younger than this alone
completion = "settle"          # settle (unchanged, no writer) | rename (ERP writes x.csv.tmp, renames)
#                              #   | done-file (x.csv taken once x.csv.done appears), docs/inputs.md
watch = "events"               # events (picked up at once) | poll (every poll_seconds: NFS, SMB shares)
validation_profile = "en16931" # en16931 | fr (+ BR-FR) | fr-extended (+ EXTENDED-CTC-FR), docs/validation.md
vat_rounding = "erp"           # erp (the ERP's VAT, rounded line by line) | recompute, docs/inputs.md
max_lines_per_invoice = 100000 # one invoice beyond these is held back unread (memory grows with them)
max_invoice_bytes = 67108864   # 64 MiB: the invoice's rows (its JSON line, its XML element) as written

[channels.erp.csv]
delimiter = ";"
encoding = "utf-8"             # or cp1252
decimal = "."                  # or ","
date_format = "%Y-%m-%d"
"""
