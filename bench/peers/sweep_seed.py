#!/usr/bin/env python3
# coding: utf-8
# The seed's ping sweep (shared/seeds/000_e1dfd9cb2fac9582.txt), for the
# `sweep` benchmark. Changed only (1) to take the prefix as an argument, with
# loopback (127.0.0.) as the default instead of 192.168.31.: this benchmark
# never pings anything but 127.0.0.0/8 (or, in the mostly-down case, a /24
# inside a throwaway network namespace); and (2) to wrap each coroutine in
# ensure_future, since Python 3.11's asyncio.wait() refuses bare coroutines.

import time
import subprocess
import asyncio
import re
import sys

PREFIX = sys.argv[1] if len(sys.argv) > 1 else "127.0.0."
# Anything but loopback only inside a network namespace of its own (the
# bench's mostly-down case runs it via `ip netns exec`), never on the host's.
import os
def _own_netns():
    # Whether this process's network namespace is one made by `ip netns add`.
    try:
        me = os.stat("/proc/self/ns/net")
        named = [os.stat(os.path.join("/run/netns", n)) for n in os.listdir("/run/netns")]
    except OSError:
        return False
    return any((s.st_dev, s.st_ino) == (me.st_dev, me.st_ino) for s in named)
if not PREFIX.startswith("127.") and not _own_netns():
    raise SystemExit("sweep_seed.py: loopback prefixes only (127.x.y.) outside a network namespace")


async def ping_call(num):
    # 当前时间
    current_time = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())
    ip = "%s%s" % (PREFIX, num)
    # 超时时间为1秒，ping 1次
    cmd = 'ping -c 1 -w 1 -W 1 %s' % ip
    print(cmd)
    # 执行命令
    proc = await asyncio.create_subprocess_exec('ping', '-c', '1','-w','1','-W','1', ip,
                                            stdout=asyncio.subprocess.PIPE)
    # print("proc",proc,type(proc))
    result = await proc.stdout.read()

    # 通过正则匹配是否有100%关键字
    regex = re.findall('100% packet loss', result.decode('utf-8'))
    # 长度为0时，表示没有出现100% packet loss
    if len(regex) == 0:
        return current_time,ip,True
    else:
        return current_time,ip,False



async def main():  # 调用方
    tasks = []
    for i in range(1, 256):
        # 把所有任务添加到task中
        tasks.append(asyncio.ensure_future(ping_call(i)))

    # 子生成器
    done, pending = await asyncio.wait(tasks)
    # done和pending都是一个任务，所以返回结果需要逐个调用result()
    for r in done:
        # print(r.result())
        # 判断布尔值
        if r.result()[2]:
            # 颜色代码
            color_code = 32
        else:
            color_code = 31

        info = "\033[1;{};1m{}\033[0m".format(color_code, r.result())
        print(info)



if __name__ == '__main__':
    start = time.time()
    # 创建一个事件循环对象loop
    loop = asyncio.get_event_loop()
    try:
        # 完成事件循环，直到最后一个任务结束
        loop.run_until_complete(main())
    finally:
        # 结束事件循环
        loop.close()
    print('所有IO任务总耗时%.5f秒' % float(time.time() - start))
