"""`make check-mail`: SpamAssassin's score of a welcome and a promotion email, as built.

Each message is built exactly as delivery builds it (headers, both parts, the
promotion's List-Unsubscribe, List-Id and postal address) and handed to
``spamassassin -L -t`` (local tests only: no network lookups). Any score above
0 fails, with the rules that hit. Not part of `make test`: SpamAssassin takes a
few seconds per message and is a Debian package (`apt-get install spamassassin`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from jobs.mail.config import MailConfig
from jobs.mail.preview import Preview, preview, preview_campaign
from jobs.models import Campaign
from jobs.promotions.fanout import PromotionConfig
from jobs.settings import load_settings

SCORE = re.compile(r"^Content analysis details:\s+\((-?[\d.]+) points", re.MULTILINE)
RULE = re.compile(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s+(.*)$", re.MULTILINE)


def messages() -> dict[str, Preview]:
    settings = load_settings(
        FRONTEND_URL="https://shop.example.com",
        MAIL_FROM="news@shop.example.com",
        MAIL_FROM_NAME="Shop",
        PROMOTION_POSTAL_ADDRESS="Shop Inc., 1 Main Street, Springfield, IL 62701, USA",
    )
    mail = MailConfig.from_settings(settings)
    config = PromotionConfig(
        chunk_size=1,
        frontend_url="https://shop.example.com",
        unsubscribe_url="https://shop.example.com/unsubscribe",
        unsubscribe_mailto=None,
        key=b"check-mail",
        list_domain="shop.example.com",
        postal_address=settings.PROMOTION_POSTAL_ADDRESS,
    )
    campaign = Campaign(  # the seeded default campaign
        id=1,
        name="default",
        subject="Special Promotion Just For You!",
        title="Special Offer Today!",
        content="Get 50% off on all products!",
        link_path="/promotions",
    )
    return {
        "welcome": preview("welcome", {"username": "Ann"}, mail, to="ann@example.com"),
        "promotion": preview_campaign(
            campaign, config, mail, to="ann@example.com", token="1.c2lnbmF0dXJl"
        ),
    }


def main() -> int:
    if shutil.which("spamassassin") is None:
        print("check-mail: spamassassin is not installed (apt-get install spamassassin)")
        return 2
    worst = 0.0
    for name, message in messages().items():
        report = subprocess.run(
            ["spamassassin", "-L", "-t"],
            input=message.eml,
            capture_output=True,
            check=True,
        ).stdout.decode("utf-8", "replace")
        found = SCORE.search(report)
        if found is None:
            print(f"check-mail: no score in SpamAssassin's report for {name}")
            return 2
        score = float(found.group(1))
        worst = max(worst, score)
        details = report[found.end() :]
        rules = ", ".join(f"{rule} {points}" for points, rule, _ in RULE.findall(details))
        print(f"{name:<10} score {score:4.1f}  ({rules or 'no rules hit'})")
    if worst > 0:
        print(f"check-mail: FAILED, a score above 0 ({worst})")
        return 1
    print("check-mail: every message scores 0 or less")
    return 0


if __name__ == "__main__":
    sys.exit(main())
