#!/usr/bin/env python3
"""Arithmetic word problems with worked answers, from a seeded generator (standard library only).

    math_problems.py N SEED            one {"text": PROBLEM} JSON line per problem on stdout

The same (N, SEED) gives the same problems. Each problem is a short story with two to four steps of
integer arithmetic; the answer works every step out ("12 + 7 = 19.") and ends with "The answer is X.",
the shape of GSM8K's worked solutions, so a model can learn to carry a number from one step to the next.
"""
import json
import random
import sys

NAMES = ["Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kemal", "Lena",
         "Mara", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Uma", "Victor", "Wen", "Yusuf"]
ITEMS = ["apples", "books", "marbles", "stickers", "pencils", "cards", "shells", "coins", "stamps", "cookies",
         "eggs", "bolts", "tickets", "plants", "bottles", "boxes"]
PLACES = ["market", "library", "workshop", "garden", "school", "bakery", "harbour", "farm"]


def buy_give(r):
    n, it = r.choice(NAMES), r.choice(ITEMS)
    a, b = r.randint(3, 60), r.randint(2, 40)
    c = r.randint(1, a + b - 1)
    q = f"{n} has {a} {it}. {n} gets {b} more at the {r.choice(PLACES)} and then gives {c} away. " \
        f"How many {it} does {n} have now?"
    s = [f"{n} starts with {a} {it}.", f"After getting {b} more: {a} + {b} = {a + b}.",
         f"After giving {c} away: {a + b} - {c} = {a + b - c}."]
    return q, s, a + b - c


def groups(r):
    n, it = r.choice(NAMES), r.choice(ITEMS)
    g, k, extra = r.randint(2, 12), r.randint(2, 15), r.randint(0, 20)
    q = f"{n} packs {it} into {g} bags with {k} {it} in each bag. {extra} {it} are left over. " \
        f"How many {it} did {n} have?"
    s = [f"The bags hold {g} x {k} = {g * k} {it}.", f"With the ones left over: {g * k} + {extra} = {g * k + extra}."]
    return q, s, g * k + extra


def share(r):
    n, m, it = r.sample(NAMES, 2) + [r.choice(ITEMS)]
    people, each = r.randint(2, 9), r.randint(2, 12)
    total, kept = people * each, r.randint(1, 10)
    q = f"{n} has {total + kept} {it}, keeps {kept} and shares the rest equally among {people} friends, " \
        f"{m} among them. How many {it} does {m} get?"
    s = [f"{n} shares {total + kept} - {kept} = {total} {it}.", f"Each friend gets {total} / {people} = {each}."]
    return q, s, each


def price(r):
    n, it = r.choice(NAMES), r.choice(ITEMS)
    k, p, paid = r.randint(2, 9), r.randint(2, 15), 0
    cost = k * p
    paid = ((cost // 10) + r.randint(1, 3)) * 10
    q = f"At the {r.choice(PLACES)}, {it} cost {p} dollars each. {n} buys {k} of them and pays with {paid} dollars. " \
        f"How much change does {n} get?"
    s = [f"The {it} cost {k} x {p} = {cost} dollars.", f"The change is {paid} - {cost} = {paid - cost} dollars."]
    return q, s, paid - cost


def ages(r):
    n, m = r.sample(NAMES, 2)
    a, d, y = r.randint(5, 40), r.randint(2, 30), r.randint(2, 20)
    q = f"{n} is {a} years old. {m} is {d} years older than {n}. How old will {m} be in {y} years?"
    s = [f"{m} is {a} + {d} = {a + d} years old now.", f"In {y} years {m} will be {a + d} + {y} = {a + d + y}."]
    return q, s, a + d + y


def rate(r):
    n, it = r.choice(NAMES), r.choice(ITEMS)
    per, hours, broken = r.randint(3, 25), r.randint(2, 8), r.randint(0, 9)
    q = f"{n} makes {per} {it} every hour and works for {hours} hours. {broken} of them break. " \
        f"How many good {it} did {n} make?"
    s = [f"{n} makes {per} x {hours} = {per * hours} {it}.", f"Without the broken ones: {per * hours} - {broken} = "
         f"{per * hours - broken}."]
    return q, s, per * hours - broken


def two_people(r):
    n, m, it = r.sample(NAMES, 2) + [r.choice(ITEMS)]
    a, t = r.randint(4, 50), r.randint(2, 5)
    b = a * t
    q = f"{n} has {a} {it}. {m} has {t} times as many. How many {it} do they have together?"
    s = [f"{m} has {a} x {t} = {b} {it}.", f"Together: {a} + {b} = {a + b}."]
    return q, s, a + b


TEMPLATES = [buy_give, groups, share, price, ages, rate, two_people]


def problems(n, seed):
    r = random.Random(seed)
    for _ in range(n):
        q, steps, ans = r.choice(TEMPLATES)(r)
        yield f"Question: {q}\nAnswer: " + " ".join(steps) + f" The answer is {ans}."


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: math_problems.py N SEED")
    for text in problems(int(sys.argv[1]), int(sys.argv[2])):
        print(json.dumps({"text": text}))


if __name__ == "__main__":
    main()
