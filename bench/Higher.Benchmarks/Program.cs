using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Higher.Benchmarks -- --filter '*'
// dotnet run -c Release --project bench/Higher.Benchmarks -- memory   (retained bytes of long unrolls)
// dotnet run -c Release --project bench/Higher.Benchmarks -- unroll-memory [T ...]   (kept, checkpointed and implicit meta-gradients)
if (args.Length > 0 && args[0] == "unroll-memory")
{
    Higher.Benchmarks.UnrollMemoryBenchmark.Run(args[1..]);
    return;
}
if (args.Length > 0 && args[0] == "memory")
{
    Higher.Benchmarks.MemoryBenchmark.Run();
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Higher.Benchmarks.SmallOpBenchmarks).Assembly).Run(args);
