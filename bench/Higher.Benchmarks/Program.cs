using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Higher.Benchmarks -- --filter '*'
BenchmarkSwitcher.FromAssembly(typeof(Higher.Benchmarks.SmallOpBenchmarks).Assembly).Run(args);
