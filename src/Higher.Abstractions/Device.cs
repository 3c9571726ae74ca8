namespace Higher;

/// <summary>Kind of device a tensor lives on.</summary>
public enum DeviceType
{
    /// <summary>Host memory, served by the managed Reference backend.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU, served by the CUDA backend.</summary>
    Cuda,
}

/// <summary>A device: its kind and ordinal (cuda:0, cuda:1, ...). <c>Device.Cpu</c> is the default.</summary>
/// <param name="Type">The kind of device.</param>
/// <param name="Index">Ordinal among devices of that kind; 0 for the CPU.</param>
public readonly record struct Device(DeviceType Type, int Index)
{
    /// <summary>The host.</summary>
    public static Device Cpu => new(DeviceType.Cpu, 0);

    /// <summary>The CUDA device with ordinal <paramref name="index"/>.</summary>
    public static Device Cuda(int index = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        return new Device(DeviceType.Cuda, index);
    }

    /// <summary>"cpu" or "cuda:N", as PyTorch prints devices ("cpu:N" for a second host device, which only test doubles use).</summary>
    public override string ToString() => Type == DeviceType.Cpu ? (Index == 0 ? "cpu" : $"cpu:{Index}") : $"cuda:{Index}";
}
