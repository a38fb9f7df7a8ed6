def spread(n):
    a = 0
    for i in range(n):
        a += i % 7
        a ^= i
        a += i // 3
        a -= i % 5
        a += i * 2
    return a

def concentrated(n):
    return sum(i * i for i in range(n // 3))

def main():
    for _ in range(6):
        spread(400000)
        concentrated(400000)

main()
