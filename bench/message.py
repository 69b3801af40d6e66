"""Cost of building one message (`jobs.mail.message.build_wire`), the CPU part of delivery.

    python -m bench.message [--number N]

Three cases: a welcome email (ASCII), a promotion (List-Unsubscribe, List-Id,
Reply-To), and a non-ASCII subject and sender name (encoded-words). Best of
three runs, in microseconds per message.
"""

from __future__ import annotations

import argparse
import timeit

from jobs.mail.message import build_wire

TEXT = "Hello Ann,\n\nWelcome aboard! Your account has been created.\n\nGet started: https://shop.example.com\n"
HTML = "<html><body>" + "<p>Hello Ann, welcome aboard!</p>" * 20 + "</body></html>"
PROMOTION = {
    "List-Unsubscribe": "<https://shop.example.com/unsubscribe?token=12345.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    "List-Id": "default <default.shop.example.com>",
}
CASES: dict[str, tuple[str, str, dict[str, str] | None]] = {
    "welcome (ASCII)": ("Welcome, Ann!", "Shop", None),
    "promotion headers": ("Special Promotion Just For You!", "Shop", PROMOTION),
    "non-ASCII subject+name": ("Grüße, Zoë — 20 % de réduction sur tout !", "Boutique Zoë", None),
}


def run(number: int) -> dict[str, float]:
    """Microseconds per message, per case."""
    results = {}
    for name, (subject, sender_name, headers) in CASES.items():

        def build(
            subject: str = subject, name: str = sender_name, extra: dict[str, str] | None = headers
        ) -> None:
            build_wire(
                sender="noreply@example.com",
                sender_name=name,
                to="ann@example.com",
                subject=subject,
                text=TEXT,
                html=HTML,
                message_id="<0123456789abcdef@example.com>",
                headers=extra,
                reply_to="support@example.com",
            )

        results[name] = min(timeit.repeat(build, number=number, repeat=3)) / number * 1e6
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--number", type=int, default=20_000, help="messages per run")
    args = parser.parse_args()
    for name, micros in run(args.number).items():
        print(f"{name:<24} {micros:6.1f} µs/message")


if __name__ == "__main__":
    main()
